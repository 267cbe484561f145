"""RepoQA: function extraction (tree-sitter), BLEU similarity, best-needle pass, Mix routing."""

from __future__ import annotations

import math

import pytest

from data.sample import Sample, Turn
from programs.metrics import ScoringContext, score_turn
from programs.metrics.repoqa import extract_function, first_function, function_similarity

# 15 whitespace tokens: def | scale(values, | factor): | result | = | [] | for | v | in | values: |
# result.append(v | * | factor) | return | result
SCALE = """def scale(values, factor):
    result = []
    for v in values:
        result.append(v * factor)
    return result"""

MULTIPLY = """def multiply(a, b):
    product = a * b
    return product"""

PARSE = """def parse(line):
    key, _, value = line.partition("=")
    return key.strip(), value.strip()"""


def repo_sample(lang: str = "python") -> Sample:
    turns = tuple(
        Turn(question=f"describe {name}", answer=code, extras={"name": name})
        for name, code in (("scale", SCALE), ("multiply", MULTIPLY), ("parse", PARSE))
    )
    return Sample(id="r", context="repo", turns=turns, metadata={"lang": lang, "repo": "demo/repo"})


def fenced(code: str, tag: str = "python") -> str:
    return f"Here is the function:\n```{tag}\n{code}\n```\nIt scales each value."


# ------------------------------------------------------------------------------------------------
# extraction


def test_no_code_block_returns_the_whole_stripped_output():
    assert extract_function("  just prose, def f(): pass  ", "python") == "just prose, def f(): pass"


def test_unclosed_fence_is_not_a_block():
    text = "```python\ndef f():\n    return 1"
    assert extract_function(text, "python") == text


def test_first_function_of_the_first_block_with_one():
    block = "import os\n\nclass Box:\n    def size(self):\n        return 1\n\ndef free():\n    pass"
    # a method is a function_definition too, and it comes first
    assert extract_function(f"```python\n{block}\n```", "python") == "def size(self):\n        return 1"


def test_nested_functions_give_the_outer_one_and_decorators_are_dropped():
    code = "@cache\ndef outer(x):\n    def inner():\n        return x\n    return inner"
    expected = "def outer(x):\n    def inner():\n        return x\n    return inner"
    assert first_function(code, "python") == expected


def test_blocks_without_a_function_are_skipped():
    text = "```\npip install demo\n```\nthen\n```python\ndef g(y):\n    return y\n```"
    assert extract_function(text, "python") == "def g(y):\n    return y"


def test_no_function_in_any_block_gives_the_first_block():
    text = "```text\nfirst block\n```\n```\nsecond block\n```"
    assert extract_function(text, "python") == "first block\n"


def test_java_method_not_constructor():
    block = (
        "public class Calc {\n"
        "    public Calc() {}\n"
        "    public int add(int a, int b) {\n"
        "        return a + b;\n"
        "    }\n"
        "}"
    )
    assert extract_function(f"```java\n{block}\n```", "java") == (
        "public int add(int a, int b) {\n        return a + b;\n    }"
    )


def test_cpp_only_plain_identifier_functions():
    code = "int Foo::bar(int x) { return x; }\nstatic int add(int a, int b) { return a + b; }\n"
    assert first_function(code, "cpp") == "static int add(int a, int b) { return a + b; }"


@pytest.mark.parametrize(
    "lang, code, expected",
    [
        ("go", "package m\n\nfunc Add(a int) int { return a }\n", "func Add(a int) int { return a }"),
        ("rust", "use x;\nfn add(a: i32) -> i32 { a }\n", "fn add(a: i32) -> i32 { a }"),
        (
            "typescript",
            "const k = 1;\nfunction add(a: number): number { return a; }\n",
            "function add(a: number): number { return a; }",
        ),
    ],
)
def test_other_languages(lang, code, expected):
    assert first_function(code, lang) == expected


def test_unsupported_language_is_an_error():
    with pytest.raises(ValueError, match="python"):
        extract_function("x", "cobol")


# ------------------------------------------------------------------------------------------------
# BLEU and the pass rule


def test_bleu_identical_is_one_and_whitespace_insensitive():
    assert function_similarity(SCALE, SCALE) == pytest.approx(1.0)
    assert function_similarity("  ".join(SCALE.split()), SCALE) == pytest.approx(1.0)


def _bleu(precisions):
    return math.exp(sum(math.log(p) for p in precisions) / 4)


# token 7 ("v" in "for v in") changed: n of the (15 - n + 1) n-grams are lost for n = 1..4
ONE_CHANGE = SCALE.replace("for v in", "for w in")
ONE_CHANGE_BLEU = _bleu([14 / 15, 12 / 14, 10 / 13, 8 / 12])  # ~0.8003
# also token 13 ("return" -> "yield"): 1, 2, 2, 2 more n-grams lost (it is near the end)
TWO_CHANGES = ONE_CHANGE.replace("return result", "yield result")
TWO_CHANGES_BLEU = _bleu([13 / 15, 10 / 14, 8 / 13, 6 / 12])  # ~0.661


def test_bleu_matches_hand_computed_modified_precisions():
    assert function_similarity(ONE_CHANGE, SCALE) == pytest.approx(ONE_CHANGE_BLEU)
    assert function_similarity(TWO_CHANGES, SCALE) == pytest.approx(TWO_CHANGES_BLEU)
    assert ONE_CHANGE_BLEU > 0.8 > TWO_CHANGES_BLEU


@pytest.mark.parametrize("mode", ["official", "fixed"])
def test_repoqa_pass_rule(mode):
    sample = repo_sample()
    scale_turn, multiply_turn, _ = sample.turns
    assert score_turn("repoqa", fenced(SCALE), scale_turn, sample, mode) == 1.0
    assert score_turn("repoqa", fenced(ONE_CHANGE), scale_turn, sample, mode) == 1.0  # BLEU 0.8003
    # best match is still the gold, but BLEU 0.661 < 0.8
    assert score_turn("repoqa", fenced(TWO_CHANGES), scale_turn, sample, mode) == 0.0
    # the retrieved function is another needle
    assert score_turn("repoqa", fenced(MULTIPLY), scale_turn, sample, mode) == 0.0
    assert score_turn("repoqa", fenced(MULTIPLY), multiply_turn, sample, mode) == 1.0
    # without a code block the whole (stripped) output is compared with the needles
    assert score_turn("repoqa", SCALE, scale_turn, sample, mode) == 1.0
    assert score_turn("repoqa", "I could not find it.", scale_turn, sample, mode) == 0.0


def test_ties_go_to_the_earlier_needle():
    turns = (
        Turn("d1", MULTIPLY, {"name": "first"}),
        Turn("d2", MULTIPLY, {"name": "second"}),
    )
    sample = Sample(id="t", context="repo", turns=turns, metadata={"lang": "python"})
    assert score_turn("repoqa", fenced(MULTIPLY), turns[0], sample) == 1.0
    assert score_turn("repoqa", fenced(MULTIPLY), turns[1], sample) == 0.0


def test_repoqa_needs_lang_and_name():
    sample = Sample(id="x", context="c", turns=(Turn("d", SCALE, {"name": "scale"}),), metadata={})
    with pytest.raises(ValueError, match="lang"):
        score_turn("repoqa", SCALE, sample.turns[0], sample)
    sample = Sample(id="x", context="c", turns=(Turn("d", SCALE, {}),), metadata={"lang": "python"})
    with pytest.raises(ValueError, match="name"):
        score_turn("repoqa", SCALE, sample.turns[0], sample)


# ------------------------------------------------------------------------------------------------
# Mix.RepoQA+KV


@pytest.mark.parametrize("mode", ["official", "fixed"])
def test_repoqa_and_kv_routes_each_turn(mode):
    turns = (
        Turn("describe scale", SCALE, {"task": "scbench_repoqa", "name": "scale"}),
        Turn("value of key k1?", "9c1e-77aa", {"task": "scbench_kv"}),
        Turn("describe multiply", MULTIPLY, {"task": "scbench_repoqa", "name": "multiply"}),
    )
    sample = Sample(id="m", context="repo + kv", turns=turns, metadata={"lang": "python", "repo": "r"})
    # RepoQA turns: needles are only the RepoQA turns (the KV turn has no name and is skipped)
    assert score_turn("repoqa_and_kv", fenced(SCALE), turns[0], sample, mode) == 1.0
    assert score_turn("repoqa_and_kv", fenced(SCALE), turns[2], sample, mode) == 0.0
    # KV turns: case-sensitive substring
    assert score_turn("repoqa_and_kv", "The value is 9c1e-77aa.", turns[1], sample, mode) == 1.0
    assert score_turn("repoqa_and_kv", "9C1E-77AA", turns[1], sample, mode) == 0.0


# ------------------------------------------------------------------------------------------------
# the run around a turn: needles of every asked RepoQA turn of the same repo (official)


def test_scoring_context_collects_asked_repoqa_needles_per_repo_in_run_order():
    def mix(sample_id, repo, named):
        turns = tuple(
            Turn(f"q{i}", code, {"task": "scbench_repoqa", "name": name} if name else {"task": "scbench_kv"})
            for i, (name, code) in enumerate(named)
        )
        return Sample(id=sample_id, context="c", turns=turns, metadata={"lang": "python", "repo": repo})

    first = mix("a", "r1", [("scale", SCALE), (None, "uuid-1"), ("parse", PARSE)])
    second = mix("b", "r2", [("multiply", MULTIPLY)])
    third = mix("c", "r1", [(None, "uuid-2"), ("multiply", MULTIPLY)])
    context = ScoringContext.for_run("repoqa_and_kv", "multi-turn", [first, second, third], max_turns=2)
    # turn 2 of "a" (parse) is not asked; KV turns are no needles; repos are kept apart
    assert context.repo_needles == {"r1": (("scale", SCALE), ("multiply", MULTIPLY)), "r2": (("multiply", MULTIPLY),)}
    assert context.run_needles("repoqa_and_kv", first) == [("scale", SCALE), ("multiply", MULTIPLY)]
    assert context.session_needles("repoqa_and_kv", first) == [("scale", SCALE)]
    assert context.session_needles("repoqa_and_kv", third) == [("multiply", MULTIPLY)]
    # a sample of a repo the context does not know is a run of its own, every turn asked
    stranger = mix("d", "r9", [("parse", PARSE), ("scale", SCALE)])
    assert context.run_needles("repoqa_and_kv", stranger) == [("parse", PARSE), ("scale", SCALE)]


def test_official_needles_come_from_the_run_fixed_from_the_session():
    own = Sample(id="a", context="c", turns=(Turn("d", SCALE, {"name": "scale"}),), metadata={"lang": "python", "repo": "r"})
    # another session of the repo asked a near copy of scale: it is the best needle for the copy's text
    other = Sample(id="b", context="c", turns=(Turn("d", ONE_CHANGE, {"name": "scale_copy"}),), metadata={"lang": "python", "repo": "r"})
    context = ScoringContext.for_run("repoqa", "multi-request", [own, other])
    assert score_turn("repoqa", fenced(ONE_CHANGE), own.turns[0], own, "official", context) == 0.0
    assert score_turn("repoqa", fenced(ONE_CHANGE), own.turns[0], own, "fixed", context) == 1.0  # BLEU 0.8003
    assert score_turn("repoqa", fenced(ONE_CHANGE), own.turns[0], own, "official") == 1.0  # no context: own run


def test_repoqa_and_kv_kv_turns_in_multi_request_mode():
    turns = (Turn("describe scale", SCALE, {"task": "scbench_repoqa", "name": "scale"}), Turn("k?", "9c1e-77aa", {"task": "scbench_kv"}))
    sample = Sample(id="m", context="repo + kv", turns=turns, metadata={"lang": "python", "repo": "r"})
    multi_request = ScoringContext.for_run("repoqa_and_kv", "multi-request", [sample])
    multi_turn = ScoringContext.for_run("repoqa_and_kv", "multi-turn", [sample])
    # officially the KV scorer gets the row dict in multi-request mode: `gold in row` is never true
    assert score_turn("repoqa_and_kv", "9c1e-77aa", turns[1], sample, "official", multi_request) == 0.0
    assert score_turn("repoqa_and_kv", "9c1e-77aa", turns[1], sample, "fixed", multi_request) == 1.0
    assert score_turn("repoqa_and_kv", "9c1e-77aa", turns[1], sample, "official", multi_turn) == 1.0
    # its RepoQA turns are scored as usual
    assert score_turn("repoqa_and_kv", fenced(SCALE), turns[0], sample, "official", multi_request) == 1.0

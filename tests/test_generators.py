"""The offline generators of the synthetic SCBench tasks: seeded, within budget, answerable."""

from __future__ import annotations

import ast
import json
import re
import statistics as stats

import pytest

from data.generators.prefix_suffix import AFFIX_LEN, ALPHABET, HEADER, MAX_LEN, MIN_LEN
from data.generators.repoqa_and_kv import default_code
from data.generators.summary_with_needles import DOCUMENTS
from data.generators.vt import resolve
from data.sample import Sample, sample_from_row
from programs.registry import all_tasks

# Every task's offline generator, as its task module declares it.
GENERATORS = {task.name: task.generator for task in all_tasks() if task.generator is not None}
NEW = tuple(name for name in GENERATORS if name != "kv")  # kv has its own tests (test_kv_task.py)


def chars4(text: str) -> int:
    """A stand-in tokenizer: about four characters a token."""
    return len(text) // 4 + 1


def words(text: str) -> int:
    """A stand-in tokenizer: whitespace-separated words."""
    return len(text.split())


def generate(name: str, count=chars4, *, n: int = 2, budget: int = 3000, turns: int = 4, seed: int = 0, **kw) -> list[Sample]:
    return GENERATORS[name](count, num_samples=n, context_tokens=budget, num_turns=turns, seed=seed, **kw)


def test_the_synthetic_tasks_have_generators():
    """SCBench's synthetic tasks (SCBENCH.md: no official generators were released)."""
    assert {"kv", "prefix_suffix", "vt", "mf", "summary_with_needles", "repoqa_and_kv"} <= set(GENERATORS)


@pytest.mark.parametrize("name", NEW)
def test_same_seed_same_rows_other_seed_other_rows(name):
    a = [s.to_row() for s in generate(name, seed=7)]
    b = [s.to_row() for s in generate(name, seed=7)]
    c = [s.to_row() for s in generate(name, seed=8)]
    assert a == b
    assert a != c
    assert a[0] != a[1]  # the samples of one call differ too


@pytest.mark.parametrize("count", [chars4, words], ids=["chars", "words"])
@pytest.mark.parametrize("budget", [900, 6000])
@pytest.mark.parametrize("name", NEW)
def test_context_within_budget_and_turn_count(name, budget, count):
    for turns in (1, 3):
        samples = generate(name, count, budget=budget, turns=turns)
        for s in samples:
            used = count(s.context)
            assert used <= budget
            assert len(s.turns) == turns
            # Sized to the budget, not far below it (the Sum+NIAH granularity is one whole document).
            assert used > budget * (0.5 if name == "summary_with_needles" else 0.9)


@pytest.mark.parametrize("name", NEW)
def test_round_trip_through_rows_and_json(name):
    for s in generate(name, turns=5):
        row = s.to_row()
        assert sample_from_row(row) == s
        assert sample_from_row(json.loads(json.dumps(row))) == s


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_hub_rows_follow_the_configs_schema(name):
    """`cli.py data generate` writes the config's own hub layout; the loader reads it back."""
    from data.schema import hub_row
    from programs import get_task

    config = get_task(name).config
    schema = get_task(name).hub_schema
    for position, s in enumerate(generate(name, turns=3)):
        row = json.loads(json.dumps(hub_row(s, config, position)))
        context_field = "input" if config == "scbench_vt" else "context"
        expected = {context_field, "multi_turns", *schema.row_fields} | (set() if config in ("scbench_vt", "scbench_prefix_suffix") else {"id"})
        assert set(row) == expected
        if config == "scbench_mf":
            assert isinstance(row["context"], list) and all(type(v) is int for v in row["context"])
        back = sample_from_row(row, fallback_id=position)
        assert back.context == s.context and [(t.question, t.answer) for t in back.turns] == [(t.question, t.answer) for t in s.turns]
        assert all(set(t) <= {"input", "answer", *schema.turn_fields} for t in row["multi_turns"])
        if config == "scbench_vt":
            assert (row["index"], row["length"]) == (position, 3000)


@pytest.mark.parametrize("name", NEW)
def test_impossible_sizes_raise(name):
    with pytest.raises(ValueError):
        generate(name, budget=8)
    with pytest.raises(ValueError):
        generate(name, turns=0)


# --- task-specific: the gold answer is really in the context ------------------------------------


def _strings(context: str) -> list[str]:
    assert context.startswith(HEADER)
    return context[len(HEADER) :].split("\n")


def test_prefix_suffix_identifies_exactly_one_string_and_has_decoys():
    for s in generate("prefix_suffix", budget=5000, turns=6):
        strings = _strings(s.context)
        assert all(MIN_LEN <= len(x) <= MAX_LEN and set(x) <= set(ALPHABET) for x in strings)
        for turn in s.turns:
            prefix, suffix = re.search(r'starts with "(\w+)" and ends with "(\w+)"', turn.question).groups()
            assert len(prefix) == len(suffix) == AFFIX_LEN
            both = [x for x in strings if x.startswith(prefix) and x.endswith(suffix)]
            assert both == [turn.answer]
            assert any(x.startswith(prefix) and not x.endswith(suffix) for x in strings), "prefix decoy"
            assert any(x.endswith(suffix) and not x.startswith(prefix) for x in strings), "suffix decoy"
        depths = [t.extras["depth"] for t in s.turns]
        assert depths == sorted(depths) and depths[0] < 0.2 and depths[-1] > 0.8


def test_vt_chain_resolves_to_the_asked_value_and_decoy_chain_differs():
    for s in generate("vt", budget=4000, turns=4):
        values = resolve(s.context)
        order = [line[4:].split(" = ")[0] for line in s.context.splitlines() if line.startswith("VAR ")]
        assert len(values) == len(order) == 4 * 2 * 3  # turns x chains x (hops + 1) names
        for turn in s.turns:
            value = re.search(r"assigned the value (\d+) in the text", turn.question).group(1)
            assert isinstance(turn.answer, list) and len(turn.answer) == 3
            assert all(re.fullmatch(r"[A-Z]{5}", v) for v in turn.answer)
            assert sorted(v for v, x in values.items() if x == value) == sorted(turn.answer)
            assert [v for v in order if v in turn.answer] == turn.answer  # gold in assignment order
            decoy = turn.extras["decoy_value"]
            assert decoy != value and sum(1 for x in values.values() if x == decoy) == 3


MF_STATS = {
    "The largest number": max,
    "The smallest number": min,
    "The median": lambda v: stats.median(v),
    "The second largest distinct": lambda v: sorted(set(v))[-2],
    "The second smallest distinct": lambda v: sorted(set(v))[1],
    "The difference between": lambda v: max(v) - min(v),
    "The count of negative": lambda v: len([x for x in v if x < 0]),
}


def test_mf_statistics_recomputed_from_the_array():
    seen = set()
    for s in generate("mf", budget=2500, turns=7, n=3):
        values = ast.literal_eval(s.context)
        assert len(values) % 2 == 1 and any(x < 0 for x in values) and any(x > 0 for x in values)
        for turn in s.turns:
            assert re.findall(r"The .+ is", turn.question)
            (key,) = [k for k in MF_STATS if turn.question.startswith(k)]
            assert isinstance(turn.answer, int) and turn.answer == MF_STATS[key](values)
            seen.add(key)
        assert len({t.question for t in s.turns}) == 7  # seven different statistics
    assert seen == set(MF_STATS)


def _passkeys(context: str) -> dict[str, str]:
    return dict(re.findall(r"The (\S+) pass key is (\d+)\. Remember it\.", context))


def test_summary_with_needles_keys_and_documents_are_in_the_context():
    docs = {text: summary for text, summary in DOCUMENTS}
    for s in generate("summary_with_needles", budget=5000, turns=5):
        keys = _passkeys(s.context)
        assert [t.extras["task"] for t in s.turns] == ["scbench_summary", "scbench_passkey"] * 2 + ["scbench_summary"]
        for turn in s.turns:
            if turn.extras["task"] == "scbench_passkey":
                label = re.search(r"What is the (\S+) pass key", turn.question).group(1)
                assert keys[label] == turn.answer and isinstance(turn.answer, str)
                assert s.context.count(turn.answer) == 2  # "The x pass key is K. Remember it. K is ..."
            else:
                k = int(re.search(r"document (\d+)", turn.question).group(1))
                block = s.context.split(f"Document {k}:\n", 1)[1]
                (text,) = [t for t in docs if block.startswith(t)]
                assert turn.answer == docs[text]
        # Three summary turns, three built-in documents: each asks a different one.
        assert len({t.answer for t in s.turns if t.extras["task"] == "scbench_summary"}) == 3


def test_summary_with_needles_takes_caller_documents():
    documents = [f"Report {i}: " + " ".join(f"word{i}x{j}" for j in range(60)) for i in range(4)]
    summaries = [f"Summary of report {i}." for i in range(4)]
    (s,) = generate("summary_with_needles", budget=1200, turns=4, n=1, documents=documents, summaries=summaries)
    assert "Report 0:" in s.context and "The amber pass key is" in s.context
    for turn in s.turns:
        if turn.extras["task"] == "scbench_summary":
            k = int(re.search(r"document (\d+)", turn.question).group(1))
            assert turn.answer == summaries[(k - 1) % 4]
    with pytest.raises(ValueError):
        generate("summary_with_needles", documents=documents, summaries=summaries[:2])


def test_repoqa_and_kv_functions_and_pairs_are_in_the_context():
    for budget in (1500, 9000):
        for s in generate("repoqa_and_kv", budget=budget, turns=6):
            assert s.metadata["lang"] == "python" and s.metadata["repo"] == "python/cpython"
            ast.parse(s.context)  # the pairs are comment lines: the context is still Python
            tasks = [t.extras["task"] for t in s.turns]
            assert tasks == ["scbench_repoqa", "scbench_kv"] * 3
            for turn in s.turns:
                assert s.context.count(turn.answer) == 1
                if turn.extras["task"] == "scbench_repoqa":
                    (node,) = ast.parse(turn.answer).body
                    assert isinstance(node, ast.FunctionDef) and node.name == turn.extras["name"]
                    assert turn.extras["name"] not in turn.question
                else:
                    key = re.search(r'Key: "([0-9a-f-]{36})"', turn.question).group(1)
                    assert f'# "{key}": "{turn.answer}"' in s.context
                    assert s.context.count(key) == 1


def test_repoqa_and_kv_default_code_is_the_json_package():
    code = default_code()
    assert "def py_scanstring(" in code and "def dumps(" in code
    # A small budget keeps only the leading part of the code.
    (small,) = generate("repoqa_and_kv", budget=1200, turns=2, n=1)
    assert small.context.startswith("# File: Lib/json/decoder.py") and "def dumps(" not in small.context


def test_repoqa_and_kv_takes_caller_code():
    code = "import os\n\n\ndef alpha(x):\n    return x + 1\n\n\ndef beta(y):\n    '''Double y.'''\n    return 2 * y\n"
    (s,) = generate("repoqa_and_kv", budget=800, turns=4, n=1, code=code, repo="me/tiny")
    assert s.metadata["repo"] == "me/tiny"
    assert {t.extras["name"] for t in s.turns if t.extras["task"] == "scbench_repoqa"} == {"alpha", "beta"}
    with pytest.raises(ValueError):
        generate("repoqa_and_kv", code="x = 1\n")
    with pytest.raises(ValueError):
        generate("repoqa_and_kv", code="def broken(:\n")


# --- a real byte-level BPE tokenizer --------------------------------------------------------------


@pytest.fixture(scope="module")
def bpe_count():
    """A byte-level BPE trained in memory on generator output (about two seconds)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = [s.context for name in NEW for s in generate(name, budget=4000, n=1)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    return count


@pytest.mark.parametrize("name", NEW)
def test_budget_holds_under_a_real_bpe_tokenizer(name, bpe_count):
    for budget in (1500, 5000):
        samples = generate(name, bpe_count, budget=budget, turns=3, seed=3)
        for s in samples:
            used = bpe_count(s.context)
            assert budget * (0.5 if name == "summary_with_needles" else 0.9) < used <= budget
        assert [x.to_row() for x in samples] == [x.to_row() for x in generate(name, bpe_count, budget=budget, turns=3, seed=3)]

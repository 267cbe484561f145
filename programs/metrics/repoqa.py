"""Code.RepoQA (and the RepoQA turns of Mix.RepoQA+KV): retrieve a described function from a repo.

Follows `scbench/repo_qa_utils.py` (after evalplus/repoqa), which `compute_scores.py` calls with
`ignore_comments=False` and reads `pass@1` at the 0.8 similarity threshold:

1. `extract_function`: pull the answer function out of the model output with tree-sitter;
2. `function_similarity`: whitespace-token sentence BLEU (nltk, smoothing method 4) between that
   text and each needle function of the repo;
3. `repoqa_pass`: the turn passes iff the most similar needle is the gold one and its BLEU >= 0.8.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from functools import lru_cache

THRESHOLD = 0.8

# Tree-sitter queries for a function definition, per language (the official ones): only these node
# kinds count, e.g. a Java constructor or a C++ `Foo::bar` definition is not "a function" here.
FUNCTION_QUERIES = {
    "python": "(function_definition name: (_)) @fdef",
    "java": "(method_declaration name: (_)) @fdef",
    "typescript": "(function_declaration name: (_)) @fdef",
    "rust": "(function_item name: (_)) @fdef",
    "cpp": "(function_definition declarator: (function_declarator declarator: (identifier))) @fdef",
    "go": "(function_declaration name: (_)) @fdef",
}
LANGUAGES = tuple(FUNCTION_QUERIES)

# A fenced block: an opening fence at the start of a line with an optional word tag, the rest of
# that line blank, then everything up to the next line that starts with a fence.
_CODE_BLOCK = re.compile(r"^```(?:\w+)?\s*\n(.*?)(?=^```)```", re.DOTALL | re.MULTILINE)


@lru_cache(maxsize=None)
def _language(lang: str):
    import tree_sitter

    if lang == "python":
        import tree_sitter_python as grammar

        return tree_sitter.Language(grammar.language())
    if lang == "java":
        import tree_sitter_java as grammar

        return tree_sitter.Language(grammar.language())
    if lang == "typescript":
        import tree_sitter_typescript as grammar

        return tree_sitter.Language(grammar.language_typescript())
    if lang == "rust":
        import tree_sitter_rust as grammar

        return tree_sitter.Language(grammar.language())
    if lang == "cpp":
        import tree_sitter_cpp as grammar

        return tree_sitter.Language(grammar.language())
    if lang == "go":
        import tree_sitter_go as grammar

        return tree_sitter.Language(grammar.language())
    raise ValueError(f"RepoQA language {lang!r} is not supported; expected one of {', '.join(LANGUAGES)}")


@lru_cache(maxsize=None)
def _function_query(lang: str):
    import tree_sitter

    return tree_sitter.Query(_language(lang), FUNCTION_QUERIES[lang])


def first_function(code: str, lang: str) -> str | None:
    """The source text of the first function definition (by start position) in `code`, or None.

    Nested functions are inside their enclosing one, so the outermost first function is returned.
    """
    import tree_sitter

    data = code.encode("utf8")
    tree = tree_sitter.Parser(_language(lang)).parse(data)
    captures = tree_sitter.QueryCursor(_function_query(lang)).captures(tree.root_node)
    nodes = [node for found in captures.values() for node in found]
    if not nodes:
        return None
    node = min(nodes, key=lambda n: (n.start_byte, -n.end_byte))
    return data[node.start_byte : node.end_byte].decode("utf8", errors="replace")


def extract_function(model_output: str, lang: str) -> str:
    """The text the official scorer compares with the needles (`sanitize_output`).

    The output is stripped, then: no fenced code block -> the whole output; otherwise the blocks are
    tried in order and the first function found (tree-sitter, `FUNCTION_QUERIES`) in the first block
    that has one is returned; if no block has a function, the first block's text. An unclosed fence
    does not count as a block. Unsupported `lang` -> ValueError.
    """
    if lang not in FUNCTION_QUERIES:
        raise ValueError(f"RepoQA language {lang!r} is not supported; expected one of {', '.join(LANGUAGES)}")
    output = model_output.strip()
    blocks = _CODE_BLOCK.findall(output)
    if not blocks:
        return output
    for block in blocks:
        function = first_function(block, lang)
        if function is not None:
            return function
    return blocks[0]


def function_similarity(candidate: str, reference: str) -> float:
    """Sentence BLEU (nltk, uniform 1-4-gram weights, Chen & Cherry smoothing method 4) of the
    candidate against the single reference, both split on runs of whitespace after stripping."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    candidate_tokens = re.split(r"\s+", candidate.strip())
    reference_tokens = re.split(r"\s+", reference.strip())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = sentence_bleu(
            [reference_tokens], candidate_tokens, smoothing_function=SmoothingFunction().method4
        )
    return float(score)


def best_needle(model_output: str, needles: Sequence[tuple[str, str]], lang: str) -> tuple[str | None, float]:
    """(name, BLEU) of the needle most similar to the extracted function (`needle_evaluator`).

    `needles` are (function name, function code) pairs in their stored order. Only a strictly
    higher BLEU replaces the current best, so ties go to the earlier needle, and if every BLEU is 0
    there is no best needle (None, 0.0).
    """
    extracted = extract_function(model_output, lang)
    best_name: str | None = None
    best_score = 0.0
    for name, code in needles:
        score = function_similarity(extracted, code)
        if score > best_score:
            best_name, best_score = name, score
    return best_name, best_score


def repoqa_pass(
    model_output: str,
    gold_name: str,
    needles: Sequence[tuple[str, str]],
    lang: str,
    threshold: float = THRESHOLD,
) -> float:
    """1.0 iff the best-matching needle is the gold function (compared by name, as officially) and
    its BLEU is at least `threshold` (0.8: the official `pass@1` at threshold 0.8), else 0.0.

    `needles` is what the caller passes: officially every asked RepoQA turn of the run's sessions of
    the same repo, in the prediction file's order (`ScoringContext.run_needles`).
    """
    name, score = best_needle(model_output, needles, lang)
    return 1.0 if name is not None and name == gold_name and score >= threshold else 0.0

"""Mix.RepoQA+KV: Python source with UUID key/value comment lines inserted between top-level definitions.

Turns alternate: RepoQA turns (extras task="scbench_repoqa", name=<function name>; gold = the
function's exact source) and KV turns (extras task="scbench_kv"; gold = the value). The RepoQA
description is derived from the function itself (docstring summary, parameters, what it returns or
calls) and never names the function.

By default the code is the `json` package of the running Python (decoder, scanner, encoder,
__init__; read with `inspect.getsource`). When that code does not fit the budget, only its leading
top-level statements are kept; key/value pairs then fill the rest of the budget. Callers can pass
their own `code` (any valid Python source) and `repo` name.
"""

from __future__ import annotations

import ast
import inspect
import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from data.generators.kv import random_uuid
from data.generators.sizing import check_sizes, largest_fitting
from data.sample import Sample, Turn

DEFAULT_REPO = "python/cpython"
DEFAULT_MODULES = ("json.decoder", "json.scanner", "json.encoder", "json")
KV_LINE = "# {key_json}: {value_json}"
REPOQA_QUESTION = (
    "Based on the function description and the code context above, retrieve and repeat the exact "
    "described function from the code context in a code block wrapped by ```.\n\n"
    "Function description:\n{description}"
)
KV_QUESTION = (
    "Extract the value corresponding to the specified key from the key-value comment lines in the code "
    'above.\nKey: "{key}"\nThe value associated with the specified key is: '
)


def default_code() -> str:
    """The stdlib `json` package's source, one module after another, each under a file comment."""
    import importlib

    parts = []
    for name in DEFAULT_MODULES:
        module = importlib.import_module(name)
        path = "json/__init__.py" if name == "json" else name.replace(".", "/") + ".py"
        parts.append(f"# File: Lib/{path}\n{inspect.getsource(module)}")
    return "\n".join(parts)


@dataclass(frozen=True)
class Function:
    name: str
    source: str
    description: str
    chunk: int  # index of the top-level chunk that holds it


def split_top_level(code: str) -> tuple[list[str], list[str]]:
    """The code cut before every top-level statement, and each chunk's kind ("function", "class", "other").

    Joining the chunks gives the code back exactly. The cut is at a definition's first decorator (or
    its `def`/`class` line), so comment lines just above a definition stay with the chunk before it.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as err:
        raise ValueError(f"code is not valid Python: {err}") from err
    lines = code.splitlines(keepends=True)
    starts, kinds = [], []
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        starts.append(first - 1)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            kinds.append("function")
        elif isinstance(node, ast.ClassDef):
            kinds.append("class")
        else:
            kinds.append("other")
    if not starts:
        return [code], ["other"]
    starts[0] = 0
    bounds = starts + [len(lines)]
    return ["".join(lines[bounds[i] : bounds[i + 1]]) for i in range(len(starts))], kinds


def describe(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """A plain-language description of a function that does not reveal its name."""
    args = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
    if node.args.vararg:
        args.append("*" + node.args.vararg.arg)
    if node.args.kwarg:
        args.append("**" + node.args.kwarg.arg)
    doc = ast.get_docstring(node)
    if doc:
        purpose = " ".join(doc.strip().split("\n\n")[0].split())
        purpose = purpose.replace(node.name, "this function")
    else:
        purpose = "Not documented; judge it from its body."
    calls = sorted(
        {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)} - {node.name}
    )
    returns = any(isinstance(n, ast.Return) and n.value is not None for n in ast.walk(node))
    nested = [n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n is not node]
    body_lines = (node.end_lineno or node.lineno) - node.lineno + 1
    parts = [
        f"1. **Purpose**: {purpose}",
        f"2. **Input**: {len(args)} parameter(s)" + (f": {', '.join(args)}." if args else "."),
        "3. **Output**: " + ("returns a value." if returns else "returns nothing explicitly."),
        f"4. **Procedure**: about {body_lines} lines long"
        + (f"; calls {', '.join(calls[:6])}" if calls else "")
        + (f"; defines {len(nested)} nested function(s)" if nested else "")
        + ".",
    ]
    return "\n".join(parts)


def find_functions(code: str) -> tuple[list[str], list[str], list[Function]]:
    """The top-level chunks, their kinds, and the top-level functions (first definition of each name)."""
    chunks, kinds = split_top_level(code)
    tree = ast.parse(code)
    lines = code.splitlines(keepends=True)
    funcs: list[Function] = []
    seen: set[str] = set()
    for chunk, node in enumerate(tree.body):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name in seen:
            continue  # a redefinition would make the gold ambiguous
        seen.add(node.name)
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        source = "".join(lines[first - 1 : node.end_lineno]).rstrip("\n")
        funcs.append(Function(node.name, source, describe(node), chunk))
    return chunks, kinds, funcs


def kv_block(pairs: list[tuple[str, str]]) -> str:
    return "".join(KV_LINE.format(key_json=json.dumps(k), value_json=json.dumps(v)) + "\n" for k, v in pairs)


def gaps(kinds: list[str], num_chunks: int) -> list[int]:
    """Chunks after which pairs may go: those followed by a function or class, and the last one."""
    return [g for g in range(num_chunks - 1) if kinds[g + 1] != "other"] + [num_chunks - 1]


def build_context(chunks: list[str], kinds: list[str], num_chunks: int, pairs: list[tuple[str, str]], num_pairs: int) -> str:
    """The first `num_chunks` chunks with the first `num_pairs` pairs dealt round-robin into the gaps."""
    where = gaps(kinds, num_chunks)
    by_chunk: dict[int, list[tuple[str, str]]] = {}
    for j in range(num_pairs):
        by_chunk.setdefault(where[j % len(where)], []).append(pairs[j])
    out = []
    for g in range(num_chunks):
        chunk = chunks[g]
        out.append(chunk if chunk.endswith("\n") else chunk + "\n")
        if g in by_chunk:
            out.append("\n" + kv_block(by_chunk[g]) + "\n")
    return "".join(out)


def pair_order(kinds: list[str], num_chunks: int, num_pairs: int) -> list[int]:
    """Pair indices in the order they appear in the context built by `build_context`."""
    m = len(gaps(kinds, num_chunks))
    return [j for g in range(m) for j in range(g, num_pairs, m)]


def generate_repoqa_and_kv(
    count_tokens: Callable[[str], int],
    *,
    num_samples: int,
    context_tokens: int,
    num_turns: int,
    seed: int,
    code: str | None = None,
    repo: str | None = None,
) -> list[Sample]:
    check_sizes(num_samples, num_turns)
    if code is None:
        code, repo = default_code(), repo or DEFAULT_REPO
    repo = repo or "local/code"
    chunks, kinds_of_chunks, functions = find_functions(code)
    if not functions:
        raise ValueError("the code has no top-level functions to ask about")
    kinds = ["scbench_repoqa" if t % 2 == 0 else "scbench_kv" for t in range(num_turns)]
    n_repoqa, n_kv = kinds.count("scbench_repoqa"), kinds.count("scbench_kv")
    min_pairs = max(1, n_kv)
    rng = random.Random(seed)
    samples = []
    for index in range(num_samples):
        pairs: list[tuple[str, str]] = []

        def draw(k: int) -> list[tuple[str, str]]:
            while len(pairs) < k:
                pairs.append((random_uuid(rng), random_uuid(rng)))
            return pairs

        # 1) the longest leading part of the code that still leaves room for the pairs the turns need;
        def with_code(k: int) -> str:
            return build_context(chunks, kinds_of_chunks, k, draw(min_pairs), min_pairs)

        c = largest_fitting(with_code, count_tokens, context_tokens, upper=len(chunks))
        usable = [f for f in functions if f.chunk < c]
        if count_tokens(with_code(c)) > context_tokens or not usable:
            raise ValueError(
                f"context_tokens={context_tokens} cannot hold a top-level function of the code plus {min_pairs} pairs"
            )

        # 2) as many pairs as fit with that code.
        def with_pairs(k: int) -> str:
            return build_context(chunks, kinds_of_chunks, c, draw(k), k)

        n = largest_fitting(with_pairs, count_tokens, context_tokens, start=max(16, context_tokens // 100))
        n = max(n, min_pairs)
        context = build_context(chunks, kinds_of_chunks, c, draw(n), n)
        # RepoQA turns ask functions spread over the code; KV turns ask keys spread over the context.
        asked_funcs = [usable[int((i + 0.5) / n_repoqa * len(usable))] for i in range(n_repoqa)]
        order = pair_order(kinds_of_chunks, c, n)
        asked_pairs = [pairs[order[int((i + 0.5) / n_kv * n)]] for i in range(n_kv)]
        rng.shuffle(asked_funcs)
        rng.shuffle(asked_pairs)
        turns = []
        for kind in kinds:
            if kind == "scbench_repoqa":
                f = asked_funcs.pop()
                turns.append(
                    Turn(
                        question=REPOQA_QUESTION.format(description=f.description),
                        answer=f.source,
                        extras={"task": kind, "name": f.name},
                    )
                )
            else:
                key, value = asked_pairs.pop()
                turns.append(Turn(question=KV_QUESTION.format(key=key), answer=value, extras={"task": kind}))
        samples.append(
            Sample(
                id=f"repoqa_and_kv-{seed}-{index}",
                context=context,
                turns=tuple(turns),
                metadata={
                    "lang": "python",
                    "repo": repo,
                    "num_pairs": n,
                    "num_functions": len(usable),
                    "seed": seed,
                    "synthetic": True,
                },
            )
        )
    return samples

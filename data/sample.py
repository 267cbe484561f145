"""One SCBench session: a shared context and the turns asked over it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# SCBench rows nest four levels (row, multi_turns, turn, a list answer); far deeper nesting is no
# SCBench row, and would make printing or copying the row recurse past Python's limit.
MAX_DEPTH = 100


class MalformedRow(ValueError):
    """A dataset row that does not fit the SCBench schema; the loader reports and skips it."""


def nesting_depth(value: Any, stop_after: int = MAX_DEPTH) -> int:
    """How deep lists and dicts nest in `value` (a scalar: 0), counted without recursion; stops
    counting once past `stop_after`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, (list, tuple)):
            deepest = max(deepest, depth)
            if deepest > stop_after:
                return deepest
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list, tuple)))
    return deepest


@dataclass(frozen=True)
class Turn:
    """One question over the shared context, with its gold answer.

    `answer` is a string for most tasks and a list of strings for Retr.MultiHop; `extras` keeps the
    turn's other fields (e.g. `task` in the Mix configs, `name` in RepoQA, `options`).
    """

    question: str
    answer: Any
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """A session: `context` is shared by every turn; `metadata` holds the row's other fields."""

    id: str
    context: str
    turns: tuple[Turn, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """The project's row layout (run directories' contexts/ files): `id`, `context`,
        `multi_turns` and the metadata, for every config. `data.schema.hub_row` writes a config's
        own hub layout (e.g. scbench_vt's `input`, no `id`)."""
        return {
            "id": self.id,
            "context": self.context,
            "multi_turns": [{"input": t.question, "answer": t.answer, **t.extras} for t in self.turns],
            **self.metadata,
        }


def sample_from_row(row: dict[str, Any], fallback_id: Any = None) -> Sample:
    """Validate one SCBench row; raises MalformedRow saying what is wrong.

    A row without `id` (scbench_prefix_suffix and scbench_vt have none) takes `fallback_id`, its
    position in the file, as SCBench's runner numbers rows. A row without `context` takes its
    `input` (scbench_vt's name for the context), as SCBench's runner reads
    `eg["context"] if "context" in eg else eg["input"]`. Fields that are None are dropped:
    `datasets` gives every row (and turn) every key of any row (turn).
    """
    if not isinstance(row, dict):
        raise MalformedRow(f"row is {type(row).__name__}, expected an object")
    if nesting_depth(row) > MAX_DEPTH:
        raise MalformedRow(f"nested deeper than {MAX_DEPTH} levels")
    if row.get("id") is None and fallback_id is not None:
        row = {**row, "id": fallback_id}
    context_field = "context" if row.get("context") is not None else "input"
    for key in ("id", context_field, "multi_turns"):
        if key not in row:
            raise MalformedRow("missing field 'context' (or 'input', as scbench_vt names it)" if key == "input" else f"missing field '{key}'")
    context = row[context_field]
    if isinstance(context, list):  # Math.Find stores the array itself; the prompt prints it as a list
        context = str(context)
    if not isinstance(context, str) or not context:
        raise MalformedRow("'context' must be a non-empty string (or a list for Math.Find)")
    turns_raw = row["multi_turns"]
    if not isinstance(turns_raw, list) or not turns_raw:
        raise MalformedRow("'multi_turns' must be a non-empty list")
    turns = []
    for i, turn in enumerate(turns_raw):
        if not isinstance(turn, dict) or "input" not in turn or "answer" not in turn:
            raise MalformedRow(f"multi_turns[{i}] needs 'input' and 'answer'")
        if not isinstance(turn["input"], str):
            raise MalformedRow(f"multi_turns[{i}].input must be a string")
        if turn["answer"] is None:
            raise MalformedRow(f"multi_turns[{i}].answer is null")
        extras = {k: v for k, v in turn.items() if k not in ("input", "answer") and v is not None}
        turns.append(Turn(question=turn["input"], answer=turn["answer"], extras=extras))
    metadata = {k: v for k, v in row.items() if k not in ("id", "context", context_field, "multi_turns") and v is not None}
    return Sample(id=str(row["id"]), context=context, turns=tuple(turns), metadata=metadata)

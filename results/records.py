"""One record per session turn: what samples.jsonl holds, typed.

A session that fails is recorded as one record with its `error` and no turn. Every record names its
point completely (`point`, `method`, `method_settings`, `budget`), so records from several runs can
be pooled or told apart without their headers (`results.identity`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from results import checks

# The format these files are written in. 1: everything before the version was recorded (no
# `format_version` anywhere); 2: typed records that carry the task's category and the point's
# full method settings and effective budget, and the gold answer's likelihood per turn.
# `results.migrate` reads every older version.
FORMAT_VERSION = 2


@dataclass(frozen=True)
class TurnRecord(checks.VersionedRecord):
    """One turn of one session, as the runner recorded it (fields in samples.jsonl's order)."""

    task: str
    mode: str  # "multi-turn" or "multi-request"
    sample_id: str
    sample_index: int  # the session's position among the task's samples (SCBench's `id`)
    category: str | None  # the task's SCBench category ("String Retrieval", ...)
    point: str  # the sweep point's label: "full", "snapkv", "snapkv-b512"
    method: str  # the KV method's name
    method_settings: dict[str, Any]  # every setting of the method (header.json's `method`)
    budget: int | None  # the method's effective budget; None for a method that has none
    format_version: int = FORMAT_VERSION
    endpoint: str | None = None  # the server the session ran on
    session_turns: int | None = None  # how many records the session wrote (resume counts them)
    session_seconds: float | None = None
    error: str | None = None  # the session failed: this record is its only one, with no turn
    turn: int | None = None  # 0-based
    question: str | None = None
    prediction: str | None = None
    gold: Any = None  # a string, or a list of strings (Retr.MultiHop)
    score: float | None = None  # the official scorer's value
    score_fixed: float | None = None  # with the known quirks corrected
    # The gold answer teacher-forced after the turn's prompt, through the KV the turn saw
    # (`programs.likelihood`): mean NLL per gold token (nats), share of gold tokens that were the
    # argmax, and how many tokens were scored. None: not measured.
    gold_nll: float | None = None
    gold_token_acc: float | None = None
    gold_tokens: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    new_prefill_tokens: int | None = None  # prompt - cached
    completion_tokens: int | None = None
    recomputed_tokens: int | None = None  # held context tokens prefilled again after an eviction
    context_tokens: int | None = None
    latency: float | None = None  # seconds, the request end to end
    finish_reason: str | None = None
    request_id: str | None = None
    kept_kv: float | None = None  # share of the request's KV visible at its first decode step
    kept_kv_heads: str | None = None  # what kept_kv averages over: "query" or "kv" heads
    kept_map: list[list[float]] | None = None  # per layer, the kept share per 1/64 of the sequence
    turn_extras: dict[str, Any] = field(default_factory=dict)  # the turn's other dataset fields
    sample_meta: dict[str, Any] = field(default_factory=dict)  # the sample's other dataset fields

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TurnRecord:
        """A current-format record; `where` names the file and line for errors."""
        record = super().from_dict(data, where)
        if record.error is None and record.turn is None:
            raise checks.RunFormatError(f"{where}: a record needs a 'turn' or an 'error'")
        problem = _value_problem(record)
        if problem:
            raise checks.RunFormatError(f"{where}: {problem}")
        return record

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def session(self) -> tuple[str, str, int]:
        """The session this record belongs to within its point: (task, mode, sample_index)."""
        return self.task, self.mode, self.sample_index

    @property
    def reuse(self) -> float | None:
        """Fraction of the turn's prompt served from the radix cache (cached / prompt tokens)."""
        if not self.prompt_tokens or self.cached_tokens is None:
            return None
        return self.cached_tokens / self.prompt_tokens

    def replace(self, **changes: Any) -> TurnRecord:
        return dataclasses.replace(self, **changes)


def _value_problem(record: TurnRecord) -> str | None:
    """What is impossible in a record of the right types (the readers index and average by these
    values, so a hand-edited or damaged one must stop at the reader), or None."""
    for name in ("turn", "sample_index"):
        value = getattr(record, name)
        if value is not None and value < 0:
            return f"field '{name}' should be 0 or more, found {value}"
    if record.session_turns is not None and record.session_turns < 1:
        return f"field 'session_turns' should be 1 or more, found {record.session_turns}"
    if record.kept_map is not None:
        widths = {len(row) for row in record.kept_map}
        if 0 in widths or len(widths) > 1:
            return "field 'kept_map' should be layers of equal, non-empty length"
    return None

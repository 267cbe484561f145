"""A point's summary.json: per point, task and mode, the score and one row per turn; and the table
the bench prints from it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from results import checks
from results.agreement import agreements
from results.identity import PointIdentity, display_names
from results.records import FORMAT_VERSION, TurnRecord


@dataclass(frozen=True)
class TurnSummary:
    turn: int  # 0-based
    n: int  # records
    score: float | None = None
    score_fixed: float | None = None
    reuse: float | None = None
    kept_kv: float | None = None
    gold_nll: float | None = None  # the gold answer's NLL per token through the method's KV
    gold_token_acc: float | None = None
    agree_f1: float | None = None  # word F1 against full attention's answer (results.agreement)
    prompt_tokens: float | None = None
    cached_tokens: float | None = None
    latency: float | None = None


@dataclass(frozen=True)
class SummaryRow:
    method: str  # the point's name (its label; with the settings that differ where labels repeat)
    task: str
    mode: str
    sessions: int = 0
    failed_sessions: int = 0
    recomputed_turns: int = 0  # turns that prefilled again context the radix cache had evicted
    score: float | None = None
    score_fixed: float | None = None
    turns: list[TurnSummary] = field(default_factory=list)


@dataclass(frozen=True)
class Summary(checks.VersionedRecord):
    results: list[SummaryRow]
    wall_seconds: float | None = None  # the point's bench run, when it wrote the summary
    format_version: int = FORMAT_VERSION


def mean_present(values) -> float | None:
    """The mean of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return mean(values) if values else None


def summarize(records: list[TurnRecord], wall_seconds: float | None = None) -> Summary:
    """Per (point, task, mode), in order of first appearance: the score and one row per turn (score,
    gold likelihood, agreement with a full-attention point among the records, reuse, kept KV,
    tokens, latency)."""
    points = [PointIdentity.of(r) for r in records]
    names = display_names(points)
    agreed = {id(r): a for r, a in zip(records, agreements(records, points))}
    groups: dict[tuple[str, str, str], list[TurnRecord]] = defaultdict(list)
    errors: dict[tuple[str, str, str], int] = defaultdict(int)
    order: dict[str, int] = {}
    for rec in records:
        name = names[PointIdentity.of(rec)]
        order.setdefault(name, len(order))
        key = (name, rec.task, rec.mode)
        if rec.failed:
            errors[key] += 1
        else:
            groups[key].append(rec)
    rows = []
    for key in sorted(set(groups) | set(errors), key=lambda k: (order[k[0]], k[1], k[2])):
        recs = groups.get(key, [])
        by_turn: dict[int, list[TurnRecord]] = defaultdict(list)
        for rec in recs:
            by_turn[rec.turn].append(rec)
        turns = [
            TurnSummary(
                turn=turn, n=len(rs), score=mean_present(r.score for r in rs), score_fixed=mean_present(r.score_fixed for r in rs),
                reuse=mean_present(r.reuse for r in rs), kept_kv=mean_present(r.kept_kv for r in rs),
                gold_nll=mean_present(r.gold_nll for r in rs), gold_token_acc=mean_present(r.gold_token_acc for r in rs),
                agree_f1=mean_present(a.f1 for r in rs if (a := agreed[id(r)]) is not None),
                prompt_tokens=mean_present(r.prompt_tokens for r in rs), cached_tokens=mean_present(r.cached_tokens for r in rs),
                latency=mean_present(r.latency for r in rs),
            )
            for turn, rs in sorted(by_turn.items())
        ]
        rows.append(SummaryRow(
            *key, sessions=len({r.sample_id for r in recs}), failed_sessions=errors.get(key, 0),
            recomputed_turns=sum(1 for r in recs if (r.recomputed_tokens or 0) > 0),
            score=mean_present(r.score for r in recs), score_fixed=mean_present(r.score_fixed for r in recs), turns=turns,
        ))
    return Summary(rows, wall_seconds)


def _fmt(value, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def results_table(summary: Summary):
    """A Rich table: one row per (point, task, mode, turn)."""
    from rich.table import Table

    table = Table(
        title="SCBench results (score x100; gold NLL / acc = the gold answer's NLL per token and share of "
        "its tokens ranked first, teacher-forced through the method's KV; agree F1 = word F1 with full "
        "attention's answer; reuse = cached / prompt tokens; kept KV = share of the request's KV visible "
        "at its first decode step)"
    )
    for col in ("method", "task", "mode", "turn", "n", "score", "gold NLL", "gold acc", "agree F1", "reuse", "kept KV",
                "cached / prompt", "latency s"):
        table.add_column(col, justify="left" if col in ("method", "task", "mode") else "right")
    for res in summary.results:
        for i, t in enumerate(res.turns):
            table.add_row(
                res.method if i == 0 else "", res.task if i == 0 else "", res.mode if i == 0 else "",
                str(t.turn + 1), str(t.n), _fmt(t.score, ".1f", 100), _fmt(t.gold_nll, ".2f"),
                _fmt(t.gold_token_acc, ".0%"), _fmt(t.agree_f1, ".0%"), _fmt(t.reuse, ".1%"), _fmt(t.kept_kv, ".1%"),
                f"{_fmt(t.cached_tokens, '.0f')} / {_fmt(t.prompt_tokens, '.0f')}", _fmt(t.latency, ".2f"),
            )
        failed = f", {res.failed_sessions} failed" if res.failed_sessions else ""
        if res.recomputed_turns:
            failed += f", {res.recomputed_turns} turns re-prefilled evicted context"
        table.add_row(
            "", "", "", "all", str(res.sessions) + failed, _fmt(res.score, ".1f", 100), "", "", "", "", "", "", "",
            end_section=True,
        )
    return table

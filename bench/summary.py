"""Aggregating per-turn records into the summary, and printing it as a table."""

from __future__ import annotations

from collections import defaultdict
from statistics import mean
from typing import Any


def reuse(record: dict[str, Any]) -> float | None:
    """Fraction of the turn's prompt served from the radix cache (cached / prompt tokens)."""
    prompt, cached = record.get("prompt_tokens"), record.get("cached_tokens")
    if not prompt or cached is None:
        return None
    return cached / prompt


def _label(record: dict[str, Any]) -> str:
    return record.get("point") or record.get("method") or "full"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return mean(values) if values else None


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (method, task, mode): overall score and one row per turn (score, reuse, kept KV, tokens,
    latency). The method is the sweep point's label ("snapkv", "snapkv-b512"); records without
    one (older runs) count as full attention."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    errors: dict[tuple[str, str, str], int] = defaultdict(int)
    for rec in records:
        key = (_label(rec), rec["task"], rec["mode"])
        if rec.get("error"):
            errors[key] += 1
        else:
            groups[key].append(rec)
    results = []
    order = {m: i for i, m in enumerate(dict.fromkeys(_label(r) for r in records))}
    for key in sorted(set(groups) | set(errors), key=lambda k: (order[k[0]], k[1], k[2])):
        method, task, mode = key
        recs = groups.get(key, [])
        by_turn: dict[int, list[dict]] = defaultdict(list)
        for rec in recs:
            by_turn[rec["turn"]].append(rec)
        turns = [
            {
                "turn": turn,
                "n": len(rs),
                "score": _mean(r["score"] for r in rs),
                "score_fixed": _mean(r.get("score_fixed") for r in rs),
                "reuse": _mean(reuse(r) for r in rs),
                "kept_kv": _mean(r.get("kept_kv") for r in rs),
                "prompt_tokens": _mean(r.get("prompt_tokens") for r in rs),
                "cached_tokens": _mean(r.get("cached_tokens") for r in rs),
                "latency": _mean(r.get("latency") for r in rs),
            }
            for turn, rs in sorted(by_turn.items())
        ]
        results.append({
            "method": method,
            "task": task,
            "mode": mode,
            "sessions": len({r["sample_id"] for r in recs}),
            "failed_sessions": errors.get(key, 0),
            # turns that prefilled again context the radix cache had evicted (bench.reuse_check)
            "recomputed_turns": sum(1 for r in recs if (r.get("recomputed_tokens") or 0) > 0),
            "score": _mean(r["score"] for r in recs),
            "score_fixed": _mean(r.get("score_fixed") for r in recs),
            "turns": turns,
        })
    return {"results": results}


def _fmt(value, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def results_table(summary: dict[str, Any]):
    """A Rich table: one row per (task, mode, turn)."""
    from rich.table import Table

    table = Table(
        title="SCBench results (score x100; reuse = cached / prompt tokens; kept KV = share of the "
        "request's KV visible at its first decode step)"
    )
    for col in ("method", "task", "mode", "turn", "n", "score", "reuse", "kept KV", "cached / prompt", "latency s"):
        table.add_column(col, justify="left" if col in ("method", "task", "mode") else "right")
    for res in summary["results"]:
        method = res.get("method", "full")
        for i, t in enumerate(res["turns"]):
            table.add_row(
                method if i == 0 else "",
                res["task"] if i == 0 else "",
                res["mode"] if i == 0 else "",
                str(t["turn"] + 1),
                str(t["n"]),
                _fmt(t["score"], ".1f", 100),
                _fmt(t["reuse"], ".1%"),
                _fmt(t.get("kept_kv"), ".1%"),
                f"{_fmt(t['cached_tokens'], '.0f')} / {_fmt(t['prompt_tokens'], '.0f')}",
                _fmt(t["latency"], ".2f"),
            )
        failed = f", {res['failed_sessions']} failed" if res["failed_sessions"] else ""
        if res.get("recomputed_turns"):
            failed += f", {res['recomputed_turns']} turns re-prefilled evicted context"
        table.add_row(
            "", "", "", "all", str(res["sessions"]) + failed, _fmt(res["score"], ".1f", 100), "", "", "", "",
            end_section=True,
        )
    return table

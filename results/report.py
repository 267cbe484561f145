"""SCBench's tables from run records, as plain data: per category (the paper's Table 2 layout), per
task, per turn; and two reports compared.

Scores follow SCBench's aggregation: a task's score is the mean over its turn records (all sessions,
all turns); a category's score is the mean of its tasks' scores; Avg is the mean of the categories
that have data. Rows are points (`results.identity`): records pool only when label, method settings
and budget all agree. The report holds fractions in [0, 1]; `results.tables` prints scores x100.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from results.agreement import Agreement, agreements, reference_point
from results.identity import PointIdentity, display_names
from results.reader import Run
from results.records import TurnRecord
from results.summary import mean_present
from errors import UsageError

CATEGORIES = ("String Retrieval", "Semantic Retrieval", "Global Information", "Multi-task")
MODE_ORDER = ("multi-turn", "multi-request")
SCORE_FIELDS = {"official": "score", "fixed": "score_fixed"}


def check_scoring(scoring: str) -> str:
    if scoring not in SCORE_FIELDS:
        raise UsageError(f"unknown scoring '{scoring}'. Valid: {', '.join(SCORE_FIELDS)}")
    return scoring


def _order(values) -> dict[Any, int]:
    return {v: i for i, v in enumerate(dict.fromkeys(values))}


def signal(recs: list[TurnRecord], agreed: dict[int, Agreement | None]) -> dict[str, float | None]:
    """The measures that move where scores sit at zero: the gold answer's likelihood through the
    method's KV (`programs.likelihood`) and agreement with full attention (`results.agreement`),
    averaged over the records."""
    found = [agreed.get(id(r)) for r in recs]
    return {
        "gold_nll": mean_present(r.gold_nll for r in recs), "gold_token_acc": mean_present(r.gold_token_acc for r in recs),
        "agree_exact": mean_present(a.exact for a in found if a), "agree_f1": mean_present(a.f1 for a in found if a),
    }


def build_report(records: list[TurnRecord], scoring: str = "official") -> dict[str, Any]:
    """The category, task and turn tables of `records` as plain data (see the module docstring)."""
    field = SCORE_FIELDS[check_scoring(scoring)]
    idents = [PointIdentity.of(r) for r in records]
    names = display_names(idents)
    agreed = {id(r): a for r, a in zip(records, agreements(records, idents))}
    groups: dict[tuple, list[TurnRecord]] = defaultdict(list)  # (point, mode, task) -> scored records
    failed: dict[tuple, set] = defaultdict(set)  # (point, mode, task) -> failed sessions
    categories: dict[str, str | None] = {}
    for ident, rec in zip(idents, records):
        group = (ident, rec.mode, rec.task)
        if categories.get(rec.task) is None:
            categories[rec.task] = rec.category
        if rec.failed:
            failed[group].add(rec.sample_id)
        else:
            groups[group].append(rec)
    present = set(groups) | set(failed)
    # Methods in order of first appearance, their budgets ascending (none first), then points in order.
    method_rank, point_rank = _order(i.method for i in idents), _order(idents)
    keys = sorted({g[0] for g in present}, key=lambda k: (method_rank[k.method], k.budget is not None, k.budget or 0, point_rank[k]))
    modes = sorted({g[1] for g in present}, key=lambda m: (m not in MODE_ORDER, MODE_ORDER.index(m) if m in MODE_ORDER else m))
    task_rank = _order(r.task for r in records)
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    tasks = sorted({g[2] for g in present}, key=lambda t: (rank.get(categories.get(t), len(rank)), task_rank[t]))

    def ident(k: PointIdentity) -> dict[str, Any]:
        return {"label": names[k], "point": k.label, "method": k.method, "budget": k.budget, "settings": k.settings}

    task_rows, category_rows, turn_rows = [], [], []
    for k in keys:
        for mode in modes:
            mode_recs = [r for t in tasks for r in groups.get((k, mode, t), [])]
            rows = []
            for task in tasks:
                group = (k, mode, task)
                if group not in present:
                    continue
                recs = groups.get(group, [])
                rows.append({
                    **ident(k), "mode": mode, "task": task, "category": categories.get(task),
                    "score": mean_present(getattr(r, field) for r in recs), "records": len(recs),
                    "sessions": len({r.sample_id for r in recs}), "failed_sessions": len(failed.get(group, ())),
                    "recomputed_turns": sum(1 for r in recs if (r.recomputed_tokens or 0) > 0),
                    **signal(recs, agreed),
                })
            if not rows:
                continue
            task_rows += rows
            by_category = {c: mean_present(r["score"] for r in rows if r["category"] == c) for c in CATEGORIES}
            category_rows.append({
                **ident(k), "mode": mode, "scores": by_category, "avg": mean_present(by_category.values()),
                "kept_kv": mean_present(r.kept_kv for r in mode_recs), "reuse": mean_present(r.reuse for r in mode_recs),
                **signal(mode_recs, agreed),
            })
            turn_rows += _turn_rows(ident(k), mode, mode_recs, field, agreed)
    notes = [
        f"{task} is not an SCBench task; it is left out of the category table" if categories.get(task) is None else
        f"{task}'s category '{categories[task]}' is not one of SCBench's; it is left out of the category table"
        for task in tasks if categories.get(task) not in CATEGORIES
    ]
    notes += [
        f"{r['label']} {r['task']} {r['mode']}: {r['failed_sessions']} failed session(s), not scored"
        for r in task_rows if r["failed_sessions"]
    ]
    notes += [
        f"{r['label']} {r['task']} {r['mode']}: {r['recomputed_turns']} turn(s) prefilled again context the server's "
        "radix cache had evicted, so a KV method's decisions on it were not kept (recomputed_tokens)"
        for r in task_rows if r["recomputed_turns"]
    ]
    return {
        "scoring": scoring,
        "scale": "scores, reuse, kept KV, gold token accuracy and agreement are fractions in [0, 1]; the tables "
                 "print scores x100; gold NLL is in nats per gold token",
        "reference": None if (ref := reference_point(idents)) is None else names[ref],
        "modes": modes,
        "methods": [ident(k) for k in keys],
        "tasks": tasks,
        "categories": category_rows,
        "task_scores": task_rows,
        "turns": turn_rows,
        "notes": notes,
    }


def _turn_rows(ident: dict[str, Any], mode: str, recs: list[TurnRecord], field: str,
               agreed: dict[int, Agreement | None]) -> list[dict[str, Any]]:
    """Per turn (1-based): the mean over tasks of the task's mean score at that turn (so a task
    with more sessions weighs no more); reuse, kept KV and the `signal` measures averaged over the
    turn's records."""
    by_turn: dict[int, list[TurnRecord]] = defaultdict(list)
    for rec in recs:
        by_turn[rec.turn].append(rec)
    rows = []
    for turn, rs in sorted(by_turn.items()):
        per_task: dict[str, list] = defaultdict(list)
        for r in rs:
            per_task[r.task].append(getattr(r, field))
        rows.append({
            **ident, "mode": mode, "turn": turn + 1, "records": len(rs),
            "score": mean_present(mean_present(v) for v in per_task.values()),
            "reuse": mean_present(r.reuse for r in rs), "kept_kv": mean_present(r.kept_kv for r in rs),
            **signal(rs, agreed),
        })
    return rows


def pooled(runs: list[Run]) -> list[str]:
    """Notes for (point, task, mode) groups that several runs hold: the report pools their records."""
    where: dict[tuple, set] = defaultdict(set)
    names = display_names(PointIdentity.of(r) for run in runs for r in run.records)
    for run in runs:
        for rec in run.records:
            where[(names[PointIdentity.of(rec)], rec.task, rec.mode)].add(run.path)
    return [
        f"{name} {task} {mode}: records of {len(paths)} runs are pooled "
        f"({', '.join(sorted(f'{p.parent.name}/{p.name}' for p in paths))})"
        for (name, task, mode), paths in where.items() if len(paths) > 1
    ]


def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (point, task, mode), and each point's category Avg: A's score, B's, B - A.

    When each side holds one point and they differ (two points of a sweep), rows pair by task and
    mode, and the method column reads "A vs B"."""
    la, lb = ([m["label"] for m in r["methods"]] for r in (a, b))
    pair = f"{la[0]} vs {lb[0]}" if len(la) == len(lb) == 1 and la != lb else None

    def scores(report):
        out = {(pair or r["label"], r["task"], r["mode"]): r["score"] for r in report["task_scores"]}
        out.update({(pair or r["label"], "Avg", r["mode"]): r["avg"] for r in report["categories"]})
        return out

    sa, sb = scores(a), scores(b)
    modes = _order([*MODE_ORDER, *a["modes"], *b["modes"]])
    tasks = _order([*a["tasks"], *b["tasks"], "Avg"])
    methods = _order(k[0] for k in [*sa, *sb])
    rows = []
    for name, task, mode in sorted(set(sa) | set(sb), key=lambda k: (methods[k[0]], modes[k[2]], tasks[k[1]])):
        va, vb = sa.get((name, task, mode)), sb.get((name, task, mode))
        delta = None if va is None or vb is None else vb - va
        rows.append({"method": name, "task": task, "mode": mode, "a": va, "b": vb, "delta": delta})
    return rows

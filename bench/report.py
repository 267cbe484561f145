"""SCBench's tables from run records: per category (the paper's Table 2 layout), per task, per turn.

Scores follow SCBench's aggregation: a task's score is the mean over its turn records (all sessions,
all turns); a category's score is the mean of its tasks' scores; Avg is the mean of the categories
that have data. The report dict holds fractions in [0, 1]; the tables print scores x100.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean
from typing import Any

from bench.results import SCORE_FIELDS, key, label
from bench.summary import reuse
from runtime.errors import UsageError

CATEGORIES = ("String Retrieval", "Semantic Retrieval", "Global Information", "Multi-task")
MODE_ORDER = ("multi-turn", "multi-request")


def check_scoring(scoring: str) -> str:
    if scoring not in SCORE_FIELDS:
        raise UsageError(f"unknown scoring '{scoring}'. Valid: {', '.join(SCORE_FIELDS)}")
    return scoring


def task_categories() -> dict[str, str]:
    """Task name -> SCBench category, in the registry's (the paper's) order."""
    from programs.registry import TASKS, task_names

    return {name: TASKS[name].category for name in task_names()}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return mean(values) if values else None


def _ident(k) -> dict[str, Any]:
    return {"label": label(k), "method": k[0], "budget": k[1]}


def build_report(records: list[dict[str, Any]], scoring: str = "official",
                 categories: dict[str, str] | None = None) -> dict[str, Any]:
    """The category, task and turn tables of `records` as plain data (see the module docstring)."""
    categories = task_categories() if categories is None else categories
    field = SCORE_FIELDS[check_scoring(scoring)]
    groups: dict[tuple, list[dict]] = defaultdict(list)  # (key, mode, task) -> scored records
    failed: dict[tuple, set] = defaultdict(set)  # (key, mode, task) -> failed sessions
    for rec in records:
        group = (key(rec), rec["mode"], rec["task"])
        if rec.get("error"):
            failed[group].add(rec["sample_id"])
        else:
            groups[group].append(rec)
    present = set(groups) | set(failed)
    # Methods in order of first appearance, their budgets ascending (unswept first).
    first = {m: i for i, m in enumerate(dict.fromkeys(key(r)[0] for r in records))}
    keys = sorted({g[0] for g in present}, key=lambda k: (first[k[0]], k[1] is not None, k[1] or 0))
    modes = sorted({g[1] for g in present}, key=lambda m: (m not in MODE_ORDER, MODE_ORDER.index(m) if m in MODE_ORDER else m))
    order = list(categories)
    tasks = sorted({g[2] for g in present}, key=lambda t: (t not in categories, order.index(t) if t in categories else t))

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
                    **_ident(k), "mode": mode, "task": task, "category": categories.get(task),
                    "score": _mean(r.get(field) for r in recs), "records": len(recs),
                    "sessions": len({r["sample_id"] for r in recs}), "failed_sessions": len(failed.get(group, ())),
                    "recomputed_turns": sum(1 for r in recs if (r.get("recomputed_tokens") or 0) > 0),
                })
            if not rows:
                continue
            task_rows += rows
            by_category = {c: _mean(r["score"] for r in rows if r["category"] == c) for c in CATEGORIES}
            category_rows.append({
                **_ident(k), "mode": mode, "scores": by_category, "avg": _mean(by_category.values()),
                "kept_kv": _mean(r.get("kept_kv") for r in mode_recs), "reuse": _mean(reuse(r) for r in mode_recs),
            })
            turn_rows += _turn_rows(k, mode, mode_recs, field)
    notes = [f"{task} is not an SCBench task; it is left out of the category table" for task in tasks if task not in categories]
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
        "scale": "scores, reuse and kept KV are fractions in [0, 1]; the tables print scores x100",
        "modes": modes,
        "methods": [_ident(k) for k in keys],
        "tasks": tasks,
        "categories": category_rows,
        "task_scores": task_rows,
        "turns": turn_rows,
        "notes": notes,
    }


def _turn_rows(k, mode: str, recs: list[dict], field: str) -> list[dict[str, Any]]:
    """Per turn (1-based): the mean over tasks of the task's mean score at that turn (so a task
    with more sessions weighs no more), and reuse / kept KV averaged over the turn's records."""
    by_turn: dict[int, list[dict]] = defaultdict(list)
    for rec in recs:
        by_turn[rec["turn"]].append(rec)
    rows = []
    for turn, rs in sorted(by_turn.items()):
        per_task: dict[str, list] = defaultdict(list)
        for r in rs:
            per_task[r["task"]].append(r.get(field))
        rows.append({
            **_ident(k), "mode": mode, "turn": turn + 1, "records": len(rs),
            "score": _mean(_mean(v) for v in per_task.values()),
            "reuse": _mean(reuse(r) for r in rs), "kept_kv": _mean(r.get("kept_kv") for r in rs),
        })
    return rows


# --- rendering -----------------------------------------------------------------------------------

def _pct(value, spec: str = ".1f", scale: float = 100.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def _table(title: str, caption: str | None = None):
    from rich.table import Table

    return Table(title=title, caption=caption, title_justify="left", caption_justify="left")


def category_tables(report: dict[str, Any]) -> list:
    tables = []
    for mode in report["modes"]:
        table = _table(
            f"SCBench by category, {mode} (score x100, {report['scoring']} scoring)",
            "A category's score is the mean of its tasks' scores; Avg is the mean of the categories "
            "with data ('-': no task of that category was run).",
        )
        table.add_column("method")
        for column in (*CATEGORIES, "Avg"):
            table.add_column(column, justify="right")
        rows = {r["label"]: r for r in report["categories"] if r["mode"] == mode}
        for method in report["methods"]:  # every method in every mode, so the tables line up
            row = rows.get(method["label"], {"scores": dict.fromkeys(CATEGORIES), "avg": None})
            table.add_row(method["label"], *(_pct(row["scores"][c]) for c in CATEGORIES), _pct(row["avg"]))
        tables.append(table)
    return tables


def task_tables(report: dict[str, Any]) -> list:
    labels = [m["label"] for m in report["methods"]]
    scores = {(r["label"], r["mode"], r["task"]): r["score"] for r in report["task_scores"]}
    tables = []
    for mode in report["modes"]:
        table = _table(f"SCBench by task, {mode} (score x100: mean over all turns of all sessions)")
        table.add_column("task")
        for name in labels:
            table.add_column(name, justify="right")
        for task in report["tasks"]:
            table.add_row(task, *(_pct(scores.get((name, mode, task))) for name in labels))
        tables.append(table)
    return tables


def turn_tables(report: dict[str, Any]) -> list:
    tables = []
    for mode in report["modes"]:
        table = _table(
            f"SCBench by turn, {mode}",
            "score x100: mean over tasks of the turn's mean score; reuse: cached / prompt tokens; "
            "kept KV: share of the request's KV its attention kept.",
        )
        for column in ("method", "turn", "records", "score", "reuse", "kept KV"):
            table.add_column(column, justify="left" if column == "method" else "right")
        rows = [r for r in report["turns"] if r["mode"] == mode]
        for i, row in enumerate(rows):
            last = i + 1 == len(rows) or rows[i + 1]["label"] != row["label"]
            table.add_row(
                row["label"] if i == 0 or rows[i - 1]["label"] != row["label"] else "",
                str(row["turn"]), str(row["records"]), _pct(row["score"]),
                _pct(row["reuse"], ".1%", 1), _pct(row["kept_kv"], ".1%", 1), end_section=last,
            )
        tables.append(table)
    return tables


def print_report(report: dict[str, Any], console) -> None:
    for table in (*category_tables(report), *task_tables(report), *turn_tables(report)):
        console.print(table)
        console.print()
    for note in report["notes"]:
        console.print(f"note: {note}", markup=False, highlight=False)


# --- comparing two reports -----------------------------------------------------------------------

def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (method, task, mode), and each method's category Avg: A's score, B's, B - A.

    When each side holds one method and they differ (two points of a sweep), rows pair by task and
    mode, and the method column reads "A vs B"."""
    la, lb = ([m["label"] for m in r["methods"]] for r in (a, b))
    pair = f"{la[0]} vs {lb[0]}" if len(la) == len(lb) == 1 and la != lb else None

    def scores(report):
        out = {(pair or r["label"], r["task"], r["mode"]): r["score"] for r in report["task_scores"]}
        out.update({(pair or r["label"], "Avg", r["mode"]): r["avg"] for r in report["categories"]})
        return out

    sa, sb = scores(a), scores(b)
    modes = {m: i for i, m in enumerate(dict.fromkeys([*MODE_ORDER, *a["modes"], *b["modes"]]))}
    tasks = {t: i for i, t in enumerate(dict.fromkeys([*a["tasks"], *b["tasks"], "Avg"]))}
    methods = {m: i for i, m in enumerate(dict.fromkeys(k[0] for k in [*sa, *sb]))}
    rows = []
    for name, task, mode in sorted(set(sa) | set(sb), key=lambda k: (methods[k[0]], modes[k[2]], tasks[k[1]])):
        va, vb = sa.get((name, task, mode)), sb.get((name, task, mode))
        delta = None if va is None or vb is None else vb - va
        rows.append({"method": name, "task": task, "mode": mode, "a": va, "b": vb, "delta": delta})
    return rows


def compare_table(rows: list[dict[str, Any]], name_a: str, name_b: str, scoring: str):
    table = _table(
        f"A = {name_a}\nB = {name_b}",
        f"score x100 ({scoring} scoring); delta = B - A; Avg = mean of the categories with data",
    )
    for column in ("method", "mode", "task", "A", "B", "delta"):
        table.add_column(column, justify="left" if column in ("method", "mode", "task") else "right")
    for i, row in enumerate(rows):
        delta = row["delta"]
        style = "" if delta is None or abs(delta) < 5e-4 else ("green" if delta > 0 else "red")
        text = "-" if delta is None else f"{100 * delta:+.1f}"
        last = i + 1 == len(rows) or (rows[i + 1]["method"], rows[i + 1]["mode"]) != (row["method"], row["mode"])
        repeat = i > 0 and rows[i - 1]["method"] == row["method"]
        table.add_row(
            "" if repeat else row["method"], row["mode"], row["task"], _pct(row["a"]), _pct(row["b"]),
            f"[{style}]{text}[/]" if style else text, end_section=last,
        )
    return table

"""SCBench's tables as Rich tables: by category, task and turn (per mode), and a comparison."""

from __future__ import annotations

from typing import Any

from results.report import CATEGORIES
from runtime.terminal_text import inert


def _pct(value, spec: str = ".1f", scale: float = 100.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def _table(title, caption: str | None = None):
    """Labels, task names and folder names come from the user's input and are never read as markup."""
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
            table.add_row(inert(method["label"]), *(_pct(row["scores"][c]) for c in CATEGORIES), _pct(row["avg"]))
        tables.append(table)
    return tables


SIGNAL_CAPTION = (
    "gold NLL: the gold answer's mean negative log-likelihood per token, teacher-forced through the "
    "method's KV (nats, lower is better); gold acc: share of gold tokens the model ranks first; "
    "agree: the answer against full attention's for the same turn (exact match, word F1)."
)


def _nll(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def signal_tables(report: dict[str, Any]) -> list:
    """Per mode, one row per point: score next to the measures that move where scores sit at zero."""
    tables = []
    for mode in report["modes"]:
        reference = report.get("reference")
        table = _table(f"What each method changed, {mode}" + (f" (agreement with {reference})" if reference else ""),
                       SIGNAL_CAPTION)
        for column in ("method", "score", "gold NLL", "gold acc", "agree exact", "agree F1", "kept KV"):
            table.add_column(column, justify="left" if column == "method" else "right")
        rows = {r["label"]: r for r in report["categories"] if r["mode"] == mode}
        for method in report["methods"]:
            row = rows.get(method["label"])
            if row is None:
                continue
            table.add_row(inert(method["label"]), _pct(row["avg"]), _nll(row["gold_nll"]), _pct(row["gold_token_acc"], ".0%", 1),
                          _pct(row["agree_exact"], ".0%", 1), _pct(row["agree_f1"], ".0%", 1), _pct(row["kept_kv"], ".1%", 1))
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
            table.add_column(inert(name), justify="right")
        for task in report["tasks"]:
            table.add_row(inert(task), *(_pct(scores.get((name, mode, task))) for name in labels))
        tables.append(table)
    return tables


def turn_tables(report: dict[str, Any]) -> list:
    tables = []
    for mode in report["modes"]:
        table = _table(
            f"SCBench by turn, {mode}",
            "score x100: mean over tasks of the turn's mean score; reuse: cached / prompt tokens; "
            "kept KV: share of the request's KV its attention kept. " + SIGNAL_CAPTION,
        )
        for column in ("method", "turn", "records", "score", "gold NLL", "gold acc", "agree F1", "reuse", "kept KV"):
            table.add_column(column, justify="left" if column == "method" else "right")
        rows = [r for r in report["turns"] if r["mode"] == mode]
        for i, row in enumerate(rows):
            last = i + 1 == len(rows) or rows[i + 1]["label"] != row["label"]
            table.add_row(
                inert(row["label"]) if i == 0 or rows[i - 1]["label"] != row["label"] else "",
                str(row["turn"]), str(row["records"]), _pct(row["score"]), _nll(row["gold_nll"]),
                _pct(row["gold_token_acc"], ".0%", 1), _pct(row["agree_f1"], ".0%", 1), _pct(row["reuse"], ".1%", 1), _pct(row["kept_kv"], ".1%", 1), end_section=last,
            )
        tables.append(table)
    return tables


def print_report(report: dict[str, Any], console) -> None:
    for table in (*category_tables(report), *signal_tables(report), *task_tables(report), *turn_tables(report)):
        console.print(table)
        console.print()
    for note in report["notes"]:
        console.print(f"note: {note}", markup=False, highlight=False)


def compare_table(rows: list[dict[str, Any]], name_a: str, name_b: str, scoring: str):
    table = _table(
        inert(f"A = {name_a}\nB = {name_b}"),
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
            "" if repeat else inert(row["method"]), row["mode"], inert(row["task"]), _pct(row["a"]), _pct(row["b"]),
            f"[{style}]{text}[/]" if style else text, end_section=last,
        )
    return table

"""`python cli.py report | rescore | compare`: SCBench's tables and figures from run directories.

Each RUN_DIR is a run (it holds samples.jsonl: a sweep point or an older single-directory run) or a
sweep (its subfolders are runs), read by `results.reader`. Nothing here talks to a server, and only
`rescore` loads the tasks (their scorers).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from commands.common import one_line_errors

RunDirs = Annotated[list[Path], typer.Argument(metavar="RUN_DIR...", help="Run or sweep directories.", show_default=False)]
Scoring = Annotated[str, typer.Option(help="Which score to tabulate: official (SCBench's scorer, quirks included) or fixed.")]


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160, stderr=stderr)  # pipes get whole tables


def report(
    run_dirs: RunDirs,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the PNG figures (default: <first RUN_DIR>/report).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables as JSON (fractions in [0, 1]) instead.")] = False,
    plots: Annotated[bool, typer.Option(help="Write the figures.")] = True,
    scoring: Scoring = "official",
) -> None:
    """SCBench's tables (by category, task and turn, per mode) and figures for finished runs."""
    with one_line_errors():
        from results.reader import load_runs
        from results.report import build_report, check_scoring, pooled
        from results.tables import print_report

        check_scoring(scoring)
        runs = load_runs(run_dirs)
        data = build_report([r for run in runs for r in run.records], scoring)
        data["notes"] = pooled(runs) + data["notes"]
        data["runs"] = [str(run.path) for run in runs]
        console = _console(stderr=as_json)  # with --json, stdout holds the JSON alone
        if not as_json:
            print_report(data, console)
        if plots:
            from results import files
            from results.plots import write_plots

            folder = out or Path(run_dirs[0]) / files.REPORT
            data["plots"] = [str(p) for p in write_plots(data, folder, note=lambda text: console.print(f"note: {text}", markup=False, highlight=False))]
            console.print(f"figures: {', '.join(data['plots']) or 'none'}", markup=False, highlight=False)
        if as_json:
            print(json.dumps(data, indent=2))


def rescore(
    run_dirs: RunDirs,
    scoring: Annotated[str, typer.Option(help="Which scores to recompute: official, fixed or both.")] = "both",
) -> None:
    """Recompute every record's score from its saved prediction; rewrites samples.jsonl and summary.json.

    Uses the task's current metric and the samples saved in contexts/. Refused while a bench is
    writing the sweep (the sweep's lock)."""
    with one_line_errors():
        from errors import UsageError
        from results.lock import sweep_locks
        from results.reader import load_runs
        from results.rescore import rescore_run

        if scoring not in ("official", "fixed", "both"):
            raise UsageError(f"unknown scoring '{scoring}'. Valid: official, fixed, both")
        scorings = ("official", "fixed") if scoring == "both" else (scoring,)
        with sweep_locks(list(run_dirs), "rescore"):  # read and rewritten while no bench appends
            for run in load_runs(run_dirs):
                result = rescore_run(run, scorings)
                for note in result["notes"]:
                    print(f"note: {note}")
                detail = ", ".join(f"{s} {result[s]}" for s in scorings)
                print(f"{run.path}: {result['changed']} of {result['records']} records rescored with a different score ({detail})")


def compare(
    run_a: Annotated[Path, typer.Argument(metavar="RUN_A", help="Run or sweep directory A.", show_default=False)],
    run_b: Annotated[Path, typer.Argument(metavar="RUN_B", help="Run or sweep directory B.", show_default=False)],
    scoring: Scoring = "official",
) -> None:
    """Two runs side by side: score per method, task and mode, and the difference B - A."""
    with one_line_errors():
        from results.reader import all_records
        from results.report import build_report, check_scoring, compare_rows
        from results.tables import compare_table

        check_scoring(scoring)
        records_a, records_b = all_records([run_a]), all_records([run_b])
        rows = compare_rows(build_report(records_a, scoring), build_report(records_b, scoring))
        _console().print(compare_table(rows, str(run_a), str(run_b), scoring))

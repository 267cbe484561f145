"""`python cli.py tui RUN_DIR`: step through a run's sessions in the terminal. Reads files only,
through `results.reader`, as the report does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from commands.common import one_line_errors


def tui(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory (holds samples.jsonl) or a sweep directory (its points do).", show_default=False)],
    task: Annotated[Optional[str], typer.Option(help="Start on a session of this task.")] = None,
    mode: Annotated[Optional[str], typer.Option(help="Start on a session of this mode: multi-turn or multi-request.")] = None,
    method: Annotated[Optional[str], typer.Option(help="Start on this point's sessions: its name as the report shows it, its label (snapkv-b512), or a method (its first budget).")] = None,
) -> None:
    """Step through sessions turn by turn: the context with the needle highlighted, question, answer
    vs gold, score, cached / new tokens, latency and the KV kept (keys in the footer)."""
    with one_line_errors():
        from tui.session import Navigator, load_sessions

        navigator = Navigator(load_sessions(run_dir))
        navigator.start_at(task=task, mode=mode, method=method)
    from tui.app import ViewerApp  # Textual is imported only when the viewer opens

    ViewerApp(navigator).run()

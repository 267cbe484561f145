"""Progress reporting as a protocol: Rich for a terminal, plain lines for logs and CI.

Labels, details and messages carry data (sample ids, row references, a server's or a model's error
text), so both displays print them inert: control characters written out, never read as markup.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Protocol

from runtime.terminal_text import clean, inert, one_line

if TYPE_CHECKING:
    from rich.console import Console


class Display(Protocol):
    def start(self, total_sessions: int, title: str) -> None: ...
    def session_done(self, label: str, detail: str) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class PlainDisplay:
    """One line per finished session, on stderr."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.total = 0
        self.done = 0
        self.started = time.monotonic()

    def start(self, total_sessions: int, title: str) -> None:
        self.total, self.done, self.started = total_sessions, 0, time.monotonic()
        print(f"{clean(title)}: {total_sessions} sessions", file=self.stream, flush=True)

    def session_done(self, label: str, detail: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        print(f"[{self.done}/{self.total}] {one_line(label)} {one_line(detail)} ({elapsed:.0f}s)", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        print(clean(text), file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichDisplay:
    """A progress bar with the last finished session beside it."""

    def __init__(self, console: Console | None = None):  # default: a Console of its own, on stderr
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        # markup=False: the description and the last session's label are data, shown as written.
        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}", markup=False),
            console=self.console,
        )
        self.task_id = None

    def start(self, total_sessions: int, title: str) -> None:
        self.progress.start()
        self.task_id = self.progress.add_task(clean(title), total=total_sessions, last="")

    def session_done(self, label: str, detail: str) -> None:
        self.progress.update(self.task_id, advance=1, last=one_line(f"{label} {detail}"))

    def message(self, text: str) -> None:
        self.progress.console.print(inert(text))

    def close(self) -> None:
        self.progress.stop()


def make_display() -> Display:
    return RichDisplay() if sys.stderr.isatty() else PlainDisplay()

"""One writer per sweep: the process that writes a sweep holds an exclusive lock on its lock file.

The lock is `flock` on `<sweep>/bench.lock`, so the operating system releases it when the holder
exits or dies (kill -9 included): a lock file left behind holds nothing and needs no cleaning. The
holder writes who it is (pid, host, start time) into the file, so a second writer is refused with
one line that names it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from results import files
from results.checks import RunFormatError


class SweepBusy(RunFormatError):
    """Another process is writing the sweep (exit 2: the same command, run twice at once)."""


def _holder(fh) -> str:
    """Who holds the lock, in words, from what the holder wrote into the file."""
    fh.seek(0)
    try:
        who = json.loads(fh.read() or "{}")
        return f"pid {who['pid']} on {who['host']}, {who['command']} since {who['started']}"
    except (ValueError, KeyError, TypeError):  # the holder has not written itself yet
        return "another process"


@contextlib.contextmanager
def sweep_lock(folder: Path, command: str) -> Iterator[None]:
    """Holds `folder`'s lock while the body runs; raises `SweepBusy` at once if another process holds it."""
    path = folder / files.LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            advice = "wait for it to end, or choose another --name or --out" if command == "bench" else "wait for it to end"
            raise SweepBusy(f"{folder} is being written by another process ({_holder(fh)}); {advice}") from None
        try:
            fh.seek(0)
            fh.truncate()
            started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": started}))
            fh.flush()
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def sweeps_of(paths: list[Path]) -> list[Path]:
    """The sweep folders that hold `paths` (a sweep folder itself, or a point inside one), each once;
    a path in no sweep (a run from before sweeps were written) has no lock to take."""
    found = []
    for path in paths:
        sweep = path if (path / files.SWEEP).is_file() else path.parent
        if (sweep / files.SWEEP).is_file() and sweep.resolve() not in [s.resolve() for s in found]:
            found.append(sweep)
    return found


@contextlib.contextmanager
def sweep_locks(paths: list[Path], command: str) -> Iterator[None]:
    """`sweep_lock` on every sweep that holds one of `paths`, so that `command` (which rewrites run
    files) never races a bench appending to them."""
    with contextlib.ExitStack() as stack:
        for sweep in sweeps_of(paths):
            stack.enter_context(sweep_lock(sweep, command))
        yield

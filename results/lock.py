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
            raise SweepBusy(f"{folder} is being written by another process ({_holder(fh)}); wait for it to "
                            "end, or choose another --name or --out") from None
        try:
            fh.seek(0)
            fh.truncate()
            started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": started}))
            fh.flush()
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

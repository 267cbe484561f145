"""The files of a run directory, and writing them so that a crash never leaves half a file.

JSON files are written to a temporary sibling, fsynced and renamed onto their name; records are
appended a session at a time in one write and fsynced, so a crash loses at most the session in
flight, as a torn last line that the reader drops.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

SWEEP = "sweep.json"  # a sweep's arguments and its points in order (results.headers.SweepIndex)
HEADER = "header.json"  # a point's arguments, method, server and versions (results.headers.PointHeader)
SAMPLES = "samples.jsonl"  # one record per session turn (results.records.TurnRecord)
SUMMARY = "summary.json"  # per task and mode: score, and per turn score, reuse, kept KV (results.summary)
CONTEXTS = "contexts"  # contexts/<task>.jsonl: the sessions' samples in SCBench's row layout
OFFICIAL = "official"  # the predictions in SCBench's own file layout (results.export)
REPORT = "report"  # the report's figures, by default
KEPT_KV = "kept_kv.jsonl"  # the kvm backend's per-request kept-KV lines
SERVER_LOG = "server.log"  # the managed server's log
LOCK = "bench.lock"  # held (flock) by the process writing the sweep (results.lock)


@contextlib.contextmanager
def _atomic_writer(path: Path):
    """A text handle on a temporary sibling of `path`, fsynced and renamed onto it on success."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str) + "\n"


def write_json_atomic(path: Path, obj: Any) -> None:
    with _atomic_writer(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    with _atomic_writer(path) as fh:
        for row in rows:
            fh.write(_line(row))


def append_jsonl_many(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows in one write and fsync (a session's records land together)."""
    text = "".join(_line(row) for row in rows)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())

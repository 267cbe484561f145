"""Resuming a run directory: which sessions are already finished, and a clean file to append to.

A session's records are appended together when it ends, each carrying `session_turns` (how many
records the session wrote). On resume, a session counts as finished when all its records are there
and none is an error; torn lines, partial sessions and failed sessions are dropped (the file is
rewritten atomically) and run again.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import rundir

SessionKey = tuple[str, str, int]  # (task, mode, sample_index)


def session_key(record: dict[str, Any]) -> SessionKey:
    return record["task"], record["mode"], int(record["sample_index"])


def finished_records(records: list[dict[str, Any]]) -> dict[SessionKey, list[dict[str, Any]]]:
    """The records of every complete, error-free session, by session."""
    by_session: dict[SessionKey, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_session[session_key(record)].append(record)
    finished = {}
    for key, recs in by_session.items():
        expected = recs[0].get("session_turns")
        if expected and len(recs) == expected and not any(r.get("error") for r in recs):
            finished[key] = recs
    return finished


def prepare_resume(samples_path: Path) -> set[SessionKey]:
    """Keep only finished sessions in `samples_path` (atomically) and return their keys."""
    records = rundir.read_jsonl(samples_path)
    finished = finished_records(records)
    kept = [r for recs in finished.values() for r in recs]
    if len(kept) != len(records) or _has_torn_tail(samples_path):
        rundir.write_jsonl_atomic(samples_path, kept)
    return set(finished)


def _has_torn_tail(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) != b"\n"

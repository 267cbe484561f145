"""Resuming a point directory: which sessions are already finished, and a clean file to append to.

A session's records are appended together when it ends, each carrying `session_turns` (how many
records the session wrote). On resume, a session counts as finished when all its records are there
and none is an error; torn lines, partial sessions and failed sessions are dropped and run again.
The records are read by `results.reader` (a damaged file is one line, exit 2), and the file is
rewritten atomically, in the current format, whenever anything was dropped or older.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from results import files
from results.reader import load_run
from results.records import TurnRecord

SessionKey = tuple[str, str, int]  # (task, mode, sample_index)


def finished_records(records: list[TurnRecord]) -> dict[SessionKey, list[TurnRecord]]:
    """The records of every complete, error-free session, by session."""
    by_session: dict[SessionKey, list[TurnRecord]] = defaultdict(list)
    for record in records:
        by_session[record.session].append(record)
    finished = {}
    for key, recs in by_session.items():
        expected = recs[0].session_turns
        if expected and len(recs) == expected and not any(r.failed for r in recs):
            finished[key] = recs
    return finished


def prepare_resume(run_dir: Path) -> set[SessionKey]:
    """Keep only finished sessions in the point's samples.jsonl and return their keys."""
    path = run_dir / files.SAMPLES
    if not path.exists():
        return set()
    run = load_run(run_dir)
    finished = finished_records(run.records)
    kept = [r for recs in finished.values() for r in recs]
    if len(kept) != len(run.records) or run.unterminated or run.older_records:
        files.write_jsonl_atomic(path, [r.to_dict() for r in kept])
    return set(finished)

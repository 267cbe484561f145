"""Resuming a point directory: which sessions are already finished, and a clean file to append to.

A session's records are appended together when it ends, each carrying `session_turns` (how many
records the session wrote). On resume, a session counts as finished when all its records are there
and none is an error; torn lines, partial sessions and failed sessions are dropped and run again.
The records are read by `results.reader` (a damaged file is one line, exit 2), and the file is
rewritten atomically, in the current format, whenever anything was dropped or older.

A point whose header says it finished is checked again before it is skipped: every session it
planned (one per task, mode and row of contexts/<task>.jsonl) must still be there, complete and
error-free; otherwise it runs again, and only the missing sessions run.
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
    return keep_finished(run_dir)[0]


def keep_finished(run_dir: Path) -> tuple[set[SessionKey], bool]:
    """Keep only finished sessions in the point's samples.jsonl; returns their keys and whether the
    file was rewritten (something was dropped or in an older format)."""
    path = run_dir / files.SAMPLES
    if not path.exists():
        return set(), False
    run = load_run(run_dir)
    finished = finished_records(run.records)
    kept = [r for recs in finished.values() for r in recs]
    rewrite = len(kept) != len(run.records) or run.unterminated or run.older_records
    if rewrite:
        files.write_jsonl_atomic(path, [r.to_dict() for r in kept])
    return set(finished), rewrite


def unfinished_reason(run_dir: Path, tasks: tuple[str, ...], modes: tuple[str, ...]) -> str | None:
    """Why a point its header marks finished is not (sessions lost from samples.jsonl, or no
    contexts/ to count them by), or None when every planned session is there, complete and error-free.

    The planned sessions are every (task, mode, row of contexts/<task>.jsonl): the rows the point
    ran, written before its first session."""
    expected: set[SessionKey] = set()
    for task in tasks:
        path = run_dir / files.CONTEXTS / f"{task}.jsonl"
        if not path.is_file():
            return f"its {files.CONTEXTS}/{task}.jsonl is missing"
        with path.open("rb") as fh:  # one sample a line; counted, not parsed (contexts are large)
            rows = sum(1 for line in fh if line.strip())
        expected |= {(task, mode, index) for mode in modes for index in range(rows)}
    if not expected:
        return None
    if not (run_dir / files.SAMPLES).is_file():
        return f"its {files.SAMPLES} is missing"
    missing = expected - set(finished_records(load_run(run_dir).records))
    if missing:
        return f"{len(missing)} of its {len(expected)} sessions are missing or incomplete in {files.SAMPLES}"
    return None

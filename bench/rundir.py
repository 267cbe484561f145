"""Self-describing run directories: header.json, samples.jsonl, summary.json.

Nothing is ever overwritten in place: JSON files are written to a temporary file, fsynced and renamed;
sample records are appended one line at a time and fsynced, so a crash loses at most the record in
flight and never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

HEADER = "header.json"
SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
CONTEXTS = "contexts"  # contexts/<task>.jsonl: the samples in SCBench's row layout


def create_run_dir(root: Path, name: str) -> Path:
    """A new directory under `root`; a name already taken gets a numeric suffix."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{name}"
    for attempt in range(1000):
        path = root / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run directory under {root}")


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


def write_json_atomic(path: Path, obj: Any) -> None:
    with _atomic_writer(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, default=str)
        fh.write("\n")


def write_jsonl_atomic(path: Path, records: list[dict[str, Any]]) -> None:
    with _atomic_writer(path) as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def append_jsonl_many(path: Path, records: list[dict[str, Any]]) -> None:
    """Append records in one write and fsync (a session's records land together)."""
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (crash mid-write) is ignored."""
    records = []
    if not path.exists():
        return records
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records

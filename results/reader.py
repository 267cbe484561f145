"""The one reader of run and sweep directories.

A path is a run when it holds samples.jsonl (one sweep point, or an older single-directory run that
may mix methods); it is a sweep when its immediate subfolders are runs, in sweep.json's order when
there is one. Every file is read through `results.migrate`, so older formats arrive as the current
one. A damaged file is one line naming the file (and the line) and what is wrong (a
`RunFormatError`, exit 2), never a traceback; the only damage forgiven is a torn last line of a
JSONL file (a crash mid-append, possibly inside a multi-byte character), which is dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from results import files, migrate
from results.checks import RunFormatError, found
from results.headers import PointHeader, SweepIndex
from results.records import FORMAT_VERSION, TurnRecord
from results.summary import Summary


@dataclass(frozen=True)
class JsonlRead:
    rows: list[tuple[int, Any]]  # (1-based line number, the line's JSON value)
    unterminated: bool  # the file does not end with a newline (a torn last line was dropped)


TOO_DEEP = "JSON nested too deeply to read"


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RunFormatError(f"{where}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})") from None


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RunFormatError(f"{where}: not JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:  # the parser recurses per level: a hostile file must not end in a traceback
        raise RunFormatError(f"{where}: {TOO_DEEP}") from None


def read_jsonl(path: Path) -> JsonlRead:
    """Every line's JSON value; blank lines are skipped. A last line without its newline is kept when
    it is whole JSON, and dropped (torn) otherwise."""
    data = path.read_bytes()
    *lines, last = data.split(b"\n")
    rows = []
    for number, raw in enumerate(lines, 1):
        if raw.strip():
            where = f"{path} line {number}"
            rows.append((number, _json(_text(raw, where), where)))
    if last.strip():
        try:
            rows.append((len(lines) + 1, json.loads(last.decode("utf-8"))))
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass  # torn by a crash mid-append
        except RecursionError:  # whole, but unreadable: not a torn line
            raise RunFormatError(f"{path} line {len(lines) + 1}: {TOO_DEEP}") from None
    return JsonlRead(rows, unterminated=bool(last))


def read_json(path: Path) -> Any:
    data = path.read_bytes()
    if not data.strip():
        raise RunFormatError(f"{path}: empty file, expected a JSON object")
    return _json(_text(data, str(path)), str(path))


def read_objects(path: Path) -> list[dict[str, Any]]:
    """A JSONL file whose every line is an object (contexts/<task>.jsonl)."""
    rows = []
    for number, row in read_jsonl(path).rows:
        if type(row) is not dict:
            raise RunFormatError(f"{path} line {number}: expected a JSON object, found {found(row)}")
        rows.append(row)
    return rows


# --- runs and sweeps -----------------------------------------------------------------------------

@dataclass
class Run:
    """One run directory read back: its header (None when it has none) and records, in file order."""

    path: Path
    header: PointHeader | None
    records: list[TurnRecord]
    unterminated: bool = False  # samples.jsonl ends in a torn line (resume rewrites it)
    older_records: bool = False  # some records were in an older format (resume rewrites them)

    @property
    def tasks(self) -> list[str]:
        return self.header.tasks if self.header else []


def is_run(path: Path) -> bool:
    return (path / files.SAMPLES).is_file()


def load_header(run_dir: Path) -> PointHeader | None:
    path = run_dir / files.HEADER
    return migrate.point_header(read_json(path), str(path)) if path.is_file() else None


def load_sweep_index(sweep_dir: Path) -> SweepIndex | None:
    path = sweep_dir / files.SWEEP
    return migrate.sweep_index(read_json(path), str(path)) if path.is_file() else None


def load_summary(run_dir: Path) -> Summary | None:
    path = run_dir / files.SUMMARY
    return migrate.summary(read_json(path), str(path)) if path.is_file() else None


def load_run(run_dir: Path) -> Run:
    """`run_dir`'s header and records (none yet when it has no samples.jsonl)."""
    header_path, samples = run_dir / files.HEADER, run_dir / files.SAMPLES
    raw_header = read_json(header_path) if header_path.is_file() else {}
    header = migrate.point_header(raw_header, str(header_path)) if header_path.is_file() else None
    if not samples.is_file():
        return Run(run_dir, header, [])
    read = read_jsonl(samples)
    records, older = [], False
    for number, row in read.rows:
        record = migrate.turn_record(row, f"{samples} line {number}", raw_header)
        older = older or row.get("format_version", 1) != FORMAT_VERSION
        records.append(record)
    return Run(run_dir, header, records, read.unterminated, older)


def run_dirs(path: Path) -> list[Path]:
    """The run directories a path names: itself, or its points (in sweep.json's order if present)."""
    if not path.exists():
        raise RunFormatError(f"{path}: no such file or folder")
    if is_run(path):
        return [path]
    subs = sorted(d for d in path.iterdir() if d.is_dir() and is_run(d)) if path.is_dir() else []
    if not subs:
        raise RunFormatError(f"{path} is not a run directory: no {files.SAMPLES} in it or its subfolders")
    index = load_sweep_index(path)
    if index is not None:
        order = {name: i for i, name in enumerate(index.points)}
        subs.sort(key=lambda d: (order.get(d.name, len(order)), d.name))
    return subs


def load_runs(paths) -> list[Run]:
    """Every run under `paths` (runs or sweeps), each directory once even when named twice."""
    dirs = dict.fromkeys(d.resolve() for p in paths for d in run_dirs(Path(p)))
    return [load_run(d) for d in dirs]


def all_records(paths) -> list[TurnRecord]:
    return [r for run in load_runs(paths) for r in run.records]


def load_contexts(run_dir: Path, task: str) -> list[dict[str, Any]] | None:
    """contexts/<task>.jsonl's rows in SCBench's row layout; None when the run did not keep it."""
    path = run_dir / files.CONTEXTS / f"{task}.jsonl"
    return read_objects(path) if path.is_file() else None


def check_contexts(run_dir: Path) -> bool:
    """Reads every contexts/<task>.jsonl of a run, so a viewer that reads them later, one at a time,
    meets a damaged one here, as one line; False when the run kept no contexts/."""
    folder = run_dir / files.CONTEXTS
    if not folder.is_dir():
        return False
    for path in sorted(folder.glob("*.jsonl")):
        read_objects(path)
    return True

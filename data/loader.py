"""Loads SCBench rows: from the Hugging Face hub (`microsoft/SCBench`) or from local files in the
same schema (JSONL / JSON / parquet files, or a folder laid out like the hub repository: a folder
per config, or the flat data/ folder of one file per config; each config reads its own files only).

Malformed rows are reported (through `on_skip`) and skipped; the run goes on with the rest. The
configs are those of the registered tasks (`programs.registry`), each with its own fixture file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from data.sample import MalformedRow, Sample, sample_from_row
from errors import UsageError

HF_REPO = "microsoft/SCBench"
_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
# `--data fixtures`: the small hand-made rows shipped with the project (tests and smoke runs).
FIXTURES = "fixtures"


def configs() -> tuple[str, ...]:
    """The hub configs of every registered task, in the registry's order."""
    from programs.registry import all_tasks

    return tuple(task.config for task in all_tasks())


def fixture_path(config: str) -> Path:
    """The fixture file of a task's config (or name): the task's own, else `data/fixtures/<config>.jsonl`."""
    from programs.registry import get_task

    return get_task(config).fixture_file()


def config_files(folder: Path, config: str) -> list[Path]:
    """A config's own data files in a folder laid out like the hub: `<config>/*` (the repository's
    parquet layout), else `<config>.<ext>` or `<config>-<shard>.<ext>` (its flat data/ folder)."""
    sub = folder / config
    if sub.is_dir():
        return sorted(p for p in sub.iterdir() if p.is_file() and p.suffix in _FILE_BUILDERS)
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix in _FILE_BUILDERS and (p.stem == config or p.stem.startswith(f"{config}-"))
    )


def _load_hf_rows(config: str, source: str | None):
    """Rows as a `datasets.Dataset` (imported lazily: it is heavy)."""
    import datasets

    if source is None:
        try:
            return datasets.load_dataset(HF_REPO, config, split="test")
        except Exception as err:  # the hub raises many types (offline, auth, missing config)
            raise UsageError(
                f"could not load {HF_REPO}/{config} from the hub ({type(err).__name__}); "
                "pass --data PATH to a local JSONL/parquet file or a folder laid out like the hub repo"
            ) from err
    path = Path(source).expanduser()
    if path.is_dir():
        files = config_files(path, config)
        if not files:
            raise UsageError(
                f"--data {source}: no {config} files in that folder (expected {config}/*.parquet|.jsonl|.json "
                f"as in the hub repository, or {config}.jsonl|.json|.parquet as in its data/ folder)"
            )
        builders = {_FILE_BUILDERS[f.suffix] for f in files}
        if len(builders) > 1:
            raise UsageError(f"--data {source}: the {config} files mix formats ({', '.join(sorted(f.name for f in files))})")
        return _load_local(source, builders.pop(), [str(f) for f in files])
    if path.is_file():
        if path.suffix not in _FILE_BUILDERS:
            raise UsageError(f"--data {source}: unsupported file type; accepted: .jsonl, .json, .parquet")
        return _load_local(source, _FILE_BUILDERS[path.suffix], str(path))
    raise UsageError(f"--data {source}: no such file or folder")


def _load_local(source: str, builder: str, data_files):
    """Local files through `datasets`; a file it cannot parse is a usage error naming why."""
    import datasets

    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # it also logs the parse error it raises
    try:
        return datasets.load_dataset(builder, data_files=data_files, split="train")
    except Exception as err:  # pyarrow and datasets raise many types for a corrupt file
        cause = err.__cause__ or err
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise UsageError(f"--data {source}: cannot read it as {builder} ({reason})") from err
    finally:
        datasets.logging.set_verbosity(verbosity)


def _read_jsonl(path: Path) -> Iterator[tuple[int, object]]:
    """Reads a JSONL file line by line, so one broken line costs one row, not the file."""
    import json

    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield lineno, MalformedRow("not UTF-8 text")
                continue
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                yield lineno, MalformedRow(f"invalid JSON: {err.msg}")


def _read_json(path: Path) -> Iterator[tuple[int, object]]:
    """A .json file: an array of rows (refs: positions), one row object, or else JSON Lines (refs:
    line numbers, each broken line reported on its own)."""
    import json

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        yield from _read_jsonl(path)
        return
    yield from enumerate(document if isinstance(document, list) else [document])


def load_samples(
    config: str,
    source: str | None = None,
    *,
    limit: int | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> list[Sample]:
    """Validated samples of one SCBench config; `on_skip(row_ref, reason)` hears about bad rows."""
    known = configs()
    if config not in known:
        raise UsageError(f"unknown config '{config}'; valid: {', '.join(known)}")
    if source == FIXTURES:
        source = str(fixture_path(config))
    if source is not None and Path(source).suffix == ".jsonl" and Path(source).is_file():
        rows: Iterator[tuple[int, object]] = _read_jsonl(Path(source))  # refs: line numbers
    elif source is not None and Path(source).suffix == ".json" and Path(source).is_file():
        rows = _read_json(Path(source))
    else:
        rows = ((i, row) for i, row in enumerate(_load_hf_rows(config, source)))
    samples: list[Sample] = []
    for position, (ref, row) in enumerate(rows):
        try:
            if isinstance(row, MalformedRow):
                raise row
            samples.append(sample_from_row(row, fallback_id=position))
        except MalformedRow as err:
            row_id = row.get("id") if isinstance(row, dict) else None
            if on_skip is not None:
                on_skip(f"row {ref}" + (f" (id {row_id})" if row_id is not None else ""), str(err))
            continue
        if limit is not None and len(samples) >= limit:
            break
    return samples

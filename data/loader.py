"""Loads SCBench rows: from the Hugging Face hub (`microsoft/SCBench`) or from local files in the
same schema (JSONL / JSON / parquet files, or a folder laid out like the hub repository: a folder
per config, or the flat data/ folder of one file per config; each config reads its own files only).

Malformed rows are reported (through `on_skip`) and skipped; the run goes on with the rest. A row
is malformed when it does not fit the schema (`data.sample.sample_from_row`), is nested deeper than
any SCBench row (`data.sample.MAX_DEPTH`), or holds a turn its task cannot score (a Math.Find gold
that is not a number: `programs.spec.TaskSpec.check_scoreable`). The configs are those of the
registered tasks (`programs.registry`), each with its own fixture file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from data.sample import MAX_DEPTH, MalformedRow, Sample, sample_from_row
from errors import UsageError
from runtime.terminal_text import one_line

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
            except RecursionError:  # the parser recurses once per level
                yield lineno, MalformedRow(f"JSON nested deeper than {MAX_DEPTH} levels")


def _read_json(path: Path) -> Iterator[tuple[int, object]]:
    """A .json file: an array of rows (refs: positions), one row object, or else JSON Lines (refs:
    line numbers, each broken line reported on its own)."""
    import json

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        yield from _read_jsonl(path)
        return
    yield from enumerate(document if isinstance(document, list) else [document])


def _json_files(config: str, source: str | None) -> list[Path] | None:
    """The JSON / JSONL files `source` holds for `config`, which this module parses itself (one broken
    or too deeply nested row costs that row, where `datasets` would fail the file or crash); None
    for the hub, parquet, or a folder whose files `_load_hf_rows` must check."""
    if source is None:
        return None
    path = Path(source).expanduser()
    if path.is_file():
        return [path] if path.suffix in (".jsonl", ".json") else None
    if path.is_dir():
        files = config_files(path, config)
        if files and all(f.suffix in (".jsonl", ".json") for f in files):
            return files
    return None


def _read_json_files(files: list[Path], name_files: bool) -> Iterator[tuple[int | str, object]]:
    """Rows of each file in turn; refs are line numbers (positions in a JSON array), prefixed by the
    file's name when the rows come from a folder."""
    for path in files:
        read = _read_jsonl if path.suffix == ".jsonl" else _read_json
        for ref, row in read(path):
            yield (f"{ref} of {path.name}" if name_files else ref), row


def load_samples(
    config: str,
    source: str | None = None,
    *,
    limit: int | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> list[Sample]:
    """Validated samples of one SCBench config; `on_skip(row_ref, reason)` hears about bad rows (the
    reference holds the row's id as text that is safe to print)."""
    from programs.registry import get_task

    known = configs()
    if config not in known:
        raise UsageError(f"unknown config '{config}'; valid: {', '.join(known)}")
    task = get_task(config)
    if source == FIXTURES:
        source = str(fixture_path(config))
    json_files = _json_files(config, source)
    if json_files is not None:
        rows: Iterator[tuple[int | str, object]] = _read_json_files(json_files, name_files=Path(source).is_dir())
    else:
        rows = ((i, row) for i, row in enumerate(_load_hf_rows(config, source)))
    samples: list[Sample] = []
    for position, (ref, row) in enumerate(rows):
        try:
            if isinstance(row, MalformedRow):
                raise row
            sample = sample_from_row(row, fallback_id=position)
            try:
                task.check_scoreable(sample)
            except ValueError as err:
                raise MalformedRow(str(err)) from None
        except MalformedRow as err:
            row_id = row.get("id") if isinstance(row, dict) else None
            if on_skip is not None:
                shown_id = f" (id {one_line(str(row_id)[:80])})" if isinstance(row_id, (str, int, float)) else ""
                on_skip(f"row {ref}{shown_id}", one_line(str(err)))
            continue
        samples.append(sample)
        if limit is not None and len(samples) >= limit:
            break
    return samples

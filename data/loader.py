"""Loads SCBench rows: from the Hugging Face hub (`microsoft/SCBench`) or from local files in the
same schema (JSONL / JSON / parquet files, or a folder laid out like the hub repository).

Malformed rows are reported (through `on_skip`) and skipped; the run goes on with the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from data.sample import MalformedRow, Sample, sample_from_row
from runtime.errors import UsageError

HF_REPO = "microsoft/SCBench"
# All 12 configs of the hub dataset, in the paper's order.
CONFIGS = (
    "scbench_kv",
    "scbench_prefix_suffix",
    "scbench_vt",
    "scbench_repoqa",
    "scbench_qa_eng",
    "scbench_qa_chn",
    "scbench_choice_eng",
    "scbench_many_shot",
    "scbench_mf",
    "scbench_summary",
    "scbench_summary_with_needles",
    "scbench_repoqa_and_kv",
)
_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
# `--data fixtures`: the small hand-made rows shipped with the project (tests and smoke runs).
FIXTURES = "fixtures"


def fixture_path(config: str) -> Path:
    return FIXTURES_DIR / f"{config}.jsonl"


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
        sub = path / config
        data_dir = config if sub.is_dir() else None
        files = sorted(p for p in (sub if data_dir else path).iterdir() if p.suffix in _FILE_BUILDERS)
        if not files:
            raise UsageError(f"--data {source}: no .jsonl/.json/.parquet files for {config} in that folder")
        builder = _FILE_BUILDERS[files[0].suffix]
        return _load_local(source, builder, [str(f) for f in files])
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
    if config not in CONFIGS:
        raise UsageError(f"unknown config '{config}'; valid: {', '.join(CONFIGS)}")
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

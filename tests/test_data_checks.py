"""The data check rejects rows that would end a run later: a gold its task's scorer cannot score
(a Math.Find gold that is not a number) and JSON nested too deeply to parse or print. Both are
malformed rows like the others: named (file, row, problem) and skipped; a file without a usable row
is one line and exit 2, from `bench` (before any server starts) and from `data show`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data.loader import load_samples
from data.sample import MAX_DEPTH, MalformedRow, nesting_depth, sample_from_row
from programs.metrics import score_turn
from programs.registry import all_tasks, get_task
from tests.conftest import REPO

FIXTURES = REPO / "data" / "fixtures"


@pytest.fixture(autouse=True)
def no_managed_server(monkeypatch):
    from runtime.server import ManagedServer

    def refuse(self):
        raise AssertionError("a managed SGLang server was started")

    monkeypatch.setattr(ManagedServer, "start", refuse)


def _fixture_row(config: str, index: int = 0) -> dict:
    return json.loads((FIXTURES / f"{config}.jsonl").read_text().splitlines()[index])


def _write(path: Path, *rows: dict | str) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _mf_row(gold, row_id: int = 7) -> dict:
    row = _fixture_row("scbench_mf")
    return {**row, "id": row_id, "multi_turns": [{**t, "answer": gold} for t in row["multi_turns"]]}


def _load(config: str, path: Path) -> tuple[list, list[tuple[str, str]]]:
    skipped: list[tuple[str, str]] = []
    samples = load_samples(config, str(path), on_skip=lambda ref, why: skipped.append((ref, why)))
    return samples, skipped


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in result.output
    return lines[0]


def bench(*args: str):
    from cli import app

    return CliRunner().invoke(app, ["bench", *args])


def data_show(*args: str):
    from cli import app

    return CliRunner().invoke(app, ["data", "show", *args])


# --- 5. a gold its scorer cannot score -------------------------------------------------------------

def test_the_math_find_scorer_rejects_a_non_numeric_gold():
    """What made the run die: scoring such a turn is a ValueError, at the first score."""
    sample = sample_from_row(_mf_row("abc"))
    with pytest.raises(ValueError, match="Math.Find gold must be a number, got 'abc'"):
        score_turn("mf", "42", sample.turns[0], sample)
    with pytest.raises(ValueError, match="multi_turns\\[0\\]: mf cannot score it: Math.Find gold must be a number"):
        get_task("mf").check_scoreable(sample)


def test_loader_skips_a_row_its_scorer_cannot_score(tmp_path):
    path = _write(tmp_path / "mf.jsonl",
                  _mf_row(9379, row_id=0), _mf_row("abc", row_id=1), _mf_row([], row_id=2), _mf_row("12.5", row_id=3))
    samples, skipped = _load("scbench_mf", path)
    assert [s.id for s in samples] == ["0", "3"]  # a numeric string is a number, as the scorer reads it
    assert skipped == [
        ("row 2 (id 1)", "multi_turns[0]: mf cannot score it: Math.Find gold must be a number, got 'abc'"),
        ("row 3 (id 2)", "multi_turns[0]: mf cannot score it: empty gold answer list"),
    ]


def test_bench_refuses_a_file_of_unscoreable_rows_before_a_server_starts(tmp_path):
    out = tmp_path / "runs"
    data = _write(tmp_path / "mf.jsonl", _mf_row("abc", row_id=0))
    line = one_error_line(bench("--tasks", "mf", "--modes", "multi-turn", "--data", str(data), "--samples", "1",
                                "--out", str(out), "--name", "bad-gold"))
    assert line == (f"error: --data {data}: no usable scbench_mf rows (1 malformed rows skipped; first: row 1 (id 0): "
                    "multi_turns[0]: mf cannot score it: Math.Find gold must be a number, got 'abc')")
    assert not out.exists()


def test_data_show_names_the_unscoreable_row(tmp_path):
    data = _write(tmp_path / "mf.jsonl", _mf_row("abc", row_id=0))
    line = one_error_line(data_show("mf", "--data", str(data)))
    assert "row 1 (id 0): multi_turns[0]: mf cannot score it: Math.Find gold must be a number, got 'abc'" in line


def test_mix_and_repoqa_turns_are_checked_against_their_scorers():
    mix = _fixture_row("scbench_summary_with_needles")
    passkey = next(i for i, t in enumerate(mix["multi_turns"]) if t["task"] == "scbench_passkey")
    unknown = {**mix, "multi_turns": [{**t, "task": "scbench_nope"} if i == 0 else t for i, t in enumerate(mix["multi_turns"])]}
    with pytest.raises(ValueError, match="multi_turns\\[0\\]: .*'scbench_nope'"):
        get_task("summary_with_needles").check_scoreable(sample_from_row(unknown))
    empty_passkey = {**mix, "multi_turns": [{**t, "answer": []} if i == passkey else t for i, t in enumerate(mix["multi_turns"])]}
    with pytest.raises(ValueError, match=f"multi_turns\\[{passkey}\\]: .*empty gold answer list"):
        get_task("summary_with_needles").check_scoreable(sample_from_row(empty_passkey))

    repoqa = _fixture_row("scbench_repoqa")
    nameless = {**repoqa, "multi_turns": [{k: v for k, v in t.items() if k != "name"} for t in repoqa["multi_turns"]]}
    with pytest.raises(ValueError, match="needs extras\\['name'\\]"):
        get_task("repoqa").check_scoreable(sample_from_row(nameless))
    with pytest.raises(ValueError, match="RepoQA language 'cobol' is not supported"):
        get_task("repoqa").check_scoreable(sample_from_row({**repoqa, "lang": "cobol"}))


@pytest.mark.parametrize("task", [t.name for t in all_tasks()])
def test_every_fixture_row_passes_the_check(task):
    """No row SCBench's scorers can score is rejected: every bundled row (hub layout) loads."""
    spec = get_task(task)
    lines = [l for l in spec.fixture_file().read_text().splitlines() if l.strip()]
    samples, skipped = _load(spec.config, spec.fixture_file())
    assert skipped == [] and len(samples) == len(lines)


# --- 12. deeply nested JSON ------------------------------------------------------------------------

DEEP = '{"id": 1, "context": "c", "multi_turns": ' + "[" * 100_000 + "]" * 100_000 + "}"


def test_nesting_depth_counts_without_recursion():
    assert nesting_depth("x") == 0 and nesting_depth([1, {"a": [2]}]) == 3
    deep: list = []
    for _ in range(50_000):
        deep = [deep]
    assert nesting_depth(deep) == MAX_DEPTH + 1  # it stops counting once past the limit


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_loader_names_a_row_nested_too_deep_to_parse(tmp_path, suffix):
    path = _write(tmp_path / f"kv{suffix}", _fixture_row("scbench_kv"), DEEP)
    samples, skipped = _load("scbench_kv", path)
    assert len(samples) == 1
    assert skipped == [("row 2", f"JSON nested deeper than {MAX_DEPTH} levels")]


def test_a_json_document_too_deep_to_parse_is_read_as_lines(tmp_path):
    samples, skipped = _load("scbench_kv", _write(tmp_path / "kv.json", DEEP))
    assert samples == [] and skipped == [("row 1", f"JSON nested deeper than {MAX_DEPTH} levels")]


def test_a_hub_layout_folder_with_deep_json_names_the_file_and_row(tmp_path):
    """A folder's JSON files used to go through `datasets`, whose reader crashed the process
    (SIGSEGV) on such a line; they are read line by line like a single file."""
    folder = tmp_path / "data"
    folder.mkdir()
    _write(folder / "scbench_kv.jsonl", _fixture_row("scbench_kv"), DEEP, _fixture_row("scbench_kv", 1))
    samples, skipped = _load("scbench_kv", folder)
    assert [s.id for s in samples] == ["0", "1"]
    assert skipped == [("row 2 of scbench_kv.jsonl", f"JSON nested deeper than {MAX_DEPTH} levels")]


def test_a_parsed_row_nested_too_deep_is_malformed(tmp_path):
    answer: object = "x"
    for _ in range(MAX_DEPTH + 5):  # parses (under Python's recursion limit) but is no SCBench row
        answer = [answer]
    row = {**_fixture_row("scbench_kv"), "multi_turns": [{"input": "q", "answer": answer}]}
    with pytest.raises(MalformedRow, match=f"nested deeper than {MAX_DEPTH} levels"):
        sample_from_row(row)
    samples, skipped = _load("scbench_kv", _write(tmp_path / "kv.jsonl", row))
    assert samples == [] and skipped == [("row 1 (id 0)", f"nested deeper than {MAX_DEPTH} levels")]


def test_bench_and_data_show_report_deep_json_in_one_line(tmp_path):
    out = tmp_path / "runs"
    data = _write(tmp_path / "kv.jsonl", DEEP)
    line = one_error_line(bench("--tasks", "kv", "--modes", "multi-turn", "--data", str(data), "--samples", "1",
                                "--out", str(out), "--name", "deep"))
    problem = f"row 1: JSON nested deeper than {MAX_DEPTH} levels"
    assert line == f"error: --data {data}: no usable scbench_kv rows (1 malformed rows skipped; first: {problem})"
    assert not out.exists()
    line = one_error_line(data_show("kv", "--data", str(data)))
    assert line == f"error: --data {data}: scbench_kv has 0 usable rows, 1 rejected (first: {problem}); --index 0 is out of range"

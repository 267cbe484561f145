"""Rows in each config's real hub schema load; a flat data/ folder gives each config its own file;
real data runs every row unless --samples says otherwise."""

from __future__ import annotations

import inspect
import json

import pytest

from bench.runner import GENERATED_SAMPLES, BenchSpec, load_task_samples
from data.loader import config_files, configs, load_samples
from errors import UsageError
from programs import get_task

VT_ROW = {"index": 7, "input": "VAR ABCDE = 12345\nnoise", "length": 4096,
          "multi_turns": [{"input": "Find all variables assigned 12345.", "answer": ["ABCDE"]}]}
PREFIX_SUFFIX_ROW = {"context": "abc\ndef", "multi_turns": [{"input": "starts with a", "answer": "abc"}]}


def kv_row(i: int) -> dict:
    return {"id": 100 + i, "context": f"JSON data:\n{{\"k{i}\": \"v{i}\"}}", "multi_turns": [{"input": f"Key: \"k{i}\"", "answer": f"v{i}"}]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_vt_rows_read_their_context_from_input_and_take_their_position_as_id(tmp_path):
    path = write_jsonl(tmp_path / "vt.jsonl", [VT_ROW, {**VT_ROW, "index": 8}])
    skipped = []
    samples = load_samples("scbench_vt", str(path), on_skip=lambda ref, why: skipped.append(why))
    assert not skipped
    assert [s.id for s in samples] == ["0", "1"]  # SCBench's runner numbers rows by position
    assert samples[0].context == VT_ROW["input"]
    assert samples[0].metadata == {"index": 7, "length": 4096}
    assert samples[0].turns[0].answer == ["ABCDE"]


def test_vt_and_prefix_suffix_rows_load_through_datasets_too(tmp_path):
    import datasets

    datasets.Dataset.from_list([VT_ROW, VT_ROW]).to_parquet(str(tmp_path / "vt.parquet"))
    datasets.Dataset.from_list([PREFIX_SUFFIX_ROW] * 3).to_parquet(str(tmp_path / "ps.parquet"))
    vt = load_samples("scbench_vt", str(tmp_path / "vt.parquet"))
    assert [s.id for s in vt] == ["0", "1"] and vt[1].context == VT_ROW["input"]
    ps = load_samples("scbench_prefix_suffix", str(tmp_path / "ps.parquet"))
    assert [s.id for s in ps] == ["0", "1", "2"] and ps[0].context == "abc\ndef"


def test_a_row_with_neither_context_nor_input_is_reported(tmp_path):
    skipped = []
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": 1, "multi_turns": [{"input": "q", "answer": "a"}]}])
    assert load_samples("scbench_kv", str(path), on_skip=lambda ref, why: skipped.append(why)) == []
    assert skipped == ["missing field 'context' (or 'input', as scbench_vt names it)"]


@pytest.fixture()
def flat_data_folder(tmp_path):
    """The hub's data/ folder: one file per config, side by side, plus the card's images."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "scbench_kv.jsonl", [kv_row(i) for i in range(4)])
    write_jsonl(folder / "scbench_vt.jsonl", [VT_ROW])
    write_jsonl(folder / "scbench_repoqa_and_kv.jsonl", [{**kv_row(9), "lang": "python", "repo": "r",
                                                           "multi_turns": [{"input": "k", "answer": "v", "task": "scbench_kv"}]}])
    write_jsonl(folder / "multi_turn_kv.jsonl", [kv_row(50)])  # an older name: not scbench_kv's
    (folder / "readme.md").write_text("# SCBench\n")
    (folder / "framework.png").write_bytes(b"\x89PNG")
    return folder


def test_flat_folder_gives_each_config_its_own_file_only(flat_data_folder):
    kv = load_samples("scbench_kv", str(flat_data_folder))
    assert [s.id for s in kv] == ["100", "101", "102", "103"]
    vt = load_samples("scbench_vt", str(flat_data_folder))
    assert len(vt) == 1 and vt[0].context == VT_ROW["input"]
    mix = load_samples("scbench_repoqa_and_kv", str(flat_data_folder))
    assert [s.id for s in mix] == ["109"]
    assert [p.name for p in config_files(flat_data_folder, "scbench_repoqa")] == []  # not repoqa_and_kv's
    with pytest.raises(UsageError, match=r"no scbench_repoqa files in that folder \(expected scbench_repoqa/\*"):
        load_samples("scbench_repoqa", str(flat_data_folder))


def test_hub_repository_layout_still_reads_the_config_folder(tmp_path):
    import datasets

    repo = tmp_path / "SCBench"
    (repo / "scbench_vt").mkdir(parents=True)
    datasets.Dataset.from_list([VT_ROW] * 2).to_parquet(str(repo / "scbench_vt" / "test-00000-of-00001.parquet"))
    write_jsonl(repo / "scbench_kv.jsonl", [kv_row(0)])  # a stray flat file is not vt's
    assert len(load_samples("scbench_vt", str(repo))) == 2


def test_mixed_formats_for_one_config_are_refused(tmp_path):
    import datasets

    write_jsonl(tmp_path / "scbench_kv.jsonl", [kv_row(0)])
    datasets.Dataset.from_list([kv_row(1)]).to_parquet(str(tmp_path / "scbench_kv-00001.parquet"))
    with pytest.raises(UsageError, match="mix formats"):
        load_samples("scbench_kv", str(tmp_path))


# --- how many sessions -----------------------------------------------------------------------------


def test_samples_default_is_none_every_row_of_real_data():
    from commands.bench import bench

    assert inspect.signature(bench).parameters["samples"].default is None
    assert BenchSpec().num_samples is None


def test_hub_runs_every_row_by_default(monkeypatch):
    import data.loader as loader

    rows = [kv_row(i) for i in range(7)]
    monkeypatch.setattr(loader, "_load_hf_rows", lambda config, source: rows if source is None else pytest.fail(source))
    task = get_task("kv")
    every = load_task_samples(task, BenchSpec(data="hub"), len, lambda ref, why: None)
    assert [s.id for s in every] == [str(100 + i) for i in range(7)]
    assert len(load_task_samples(task, BenchSpec(data="hub", num_samples=2), len, lambda ref, why: None)) == 2


def test_generators_keep_their_default_count_and_fixtures_give_all_their_rows(flat_data_folder):
    words = lambda text: len(text.split())  # noqa: E731
    assert GENERATED_SAMPLES == 2
    assert len(load_task_samples(get_task("kv"), BenchSpec(), words, lambda ref, why: None)) == 2
    assert len(load_task_samples(get_task("kv"), BenchSpec(num_samples=1), words, lambda ref, why: None)) == 1
    # A task without a generator runs every bundled fixture row; --data PATH every row of the file.
    assert len(load_task_samples(get_task("qa_eng"), BenchSpec(), words, lambda ref, why: None)) == 2
    assert len(load_task_samples(get_task("kv"), BenchSpec(data=str(flat_data_folder)), words, lambda ref, why: None)) == 4


@pytest.mark.parametrize("config", configs())
def test_every_fixture_loads_in_its_hub_layout(config):
    from data.loader import FIXTURES

    assert [s.id for s in load_samples(config, FIXTURES)] == ["0", "1"]

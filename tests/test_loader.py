"""The SCBench loader on local files in the hub's schema (the hub itself is unreachable in tests)."""

from __future__ import annotations

import json

import pytest

from data.loader import configs, load_samples
from errors import UsageError

GOOD = {"id": 0, "context": "ctx", "multi_turns": [{"input": "q1", "answer": "a1"}, {"input": "q2", "answer": "a2"}]}


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_configs_are_the_registered_tasks_and_unknown_ones_are_refused(tmp_path):
    from programs.registry import task_names

    assert len(configs()) == len(set(configs())) == len(task_names())
    with pytest.raises(UsageError, match=r"^unknown config 'scbench_nope'; valid: scbench_kv, "):
        load_samples("scbench_nope", str(write_jsonl(tmp_path / "x.jsonl", [GOOD])))


def test_jsonl_rows_validate_and_malformed_rows_are_reported_and_skipped(tmp_path):
    rows = [
        GOOD,
        {"id": 1, "context": "ctx"},  # no turns
        "{not json",
        {"id": 2, "context": "", "multi_turns": [{"input": "q", "answer": "a"}]},
        {"id": 3, "context": "c", "multi_turns": [{"input": "q"}]},
        {**GOOD, "id": 4},
    ]
    skipped = []
    samples = load_samples("scbench_kv", str(write_jsonl(tmp_path / "kv.jsonl", rows)), on_skip=lambda ref, why: skipped.append((ref, why)))
    assert [s.id for s in samples] == ["0", "4"]
    assert [t.question for t in samples[0].turns] == ["q1", "q2"]
    reasons = dict(skipped)
    assert reasons["row 2 (id 1)"] == "missing field 'multi_turns'"
    assert reasons["row 3"].startswith("invalid JSON")
    assert reasons["row 4 (id 2)"].startswith("'context' must be a non-empty string")
    assert reasons["row 5 (id 3)"] == "multi_turns[0] needs 'input' and 'answer'"


def test_limit(tmp_path):
    path = write_jsonl(tmp_path / "kv.jsonl", [{**GOOD, "id": i} for i in range(5)])
    assert len(load_samples("scbench_kv", str(path), limit=2)) == 2


def test_parquet_file_and_hub_layout_folder(tmp_path):
    import datasets

    rows = [{**GOOD, "id": i} for i in range(3)]
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "kv.parquet"))
    assert [s.id for s in load_samples("scbench_kv", str(tmp_path / "kv.parquet"))] == ["0", "1", "2"]

    repo = tmp_path / "SCBench"
    (repo / "scbench_kv").mkdir(parents=True)
    ds.to_parquet(str(repo / "scbench_kv" / "test-00000.parquet"))
    assert len(load_samples("scbench_kv", str(repo))) == 3


def test_math_find_context_list_is_printed_as_a_python_list(tmp_path):
    path = write_jsonl(tmp_path / "mf.jsonl", [{"id": 0, "context": [3, -1, 2], "multi_turns": [{"input": "The max is", "answer": 3}]}])
    (sample,) = load_samples("scbench_mf", str(path))
    assert sample.context == "[3, -1, 2]"


@pytest.mark.parametrize(
    "config, source, message",
    [
        ("scbench_nope", None, "unknown config 'scbench_nope'"),
        ("scbench_kv", "/no/such/file.jsonl", "no such file or folder"),
        ("scbench_kv", "data.csv", "unsupported file type"),
    ],
)
def test_bad_input_is_a_usage_error(tmp_path, config, source, message):
    if source == "data.csv":
        source = str(tmp_path / "data.csv")
        (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(UsageError, match=message):
        load_samples(config, source)


def test_hub_unreachable_says_how_to_use_local_files(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match="pass --data PATH"):
        load_samples("scbench_kv", None)


def test_rows_without_id_take_their_position_and_none_fields_are_dropped(tmp_path):
    import datasets

    # `datasets` gives every turn every key of any turn, as None where it is missing.
    rows = [{"context": "c", "multi_turns": [{"input": "q", "answer": "a", "task": "scbench_kv", "name": None}]}] * 2
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "ps.parquet"))
    samples = load_samples("scbench_prefix_suffix", str(tmp_path / "ps.parquet"))
    assert [s.id for s in samples] == ["0", "1"]
    assert samples[0].turns[0].extras == {"task": "scbench_kv"}

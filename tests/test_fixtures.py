"""The hand-made fixtures: one file per SCBench config, in the hub's schema, every gold findable."""

from __future__ import annotations

import json
import re
import statistics as stats
from pathlib import Path

import pytest

from data.generators.vt import resolve
from data.loader import configs, fixture_path, load_samples
from data.sample import sample_from_row
from data.schema import hub_row

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures"

REPOQA_TURN = {
    "input": str,
    "answer": str,
    "name": str,
    "path": str,
    "description": str,
    "func": str,
    "code_ratio": float,
    **{k: int for k in ("start_line", "end_line", "start_byte", "end_byte")},
    **{f"global_{k}": int for k in ("start_line", "end_line", "start_byte", "end_byte")},
}
# config -> (row fields besides id/context/multi_turns, turn fields, turn fields that may be absent)
SCHEMA: dict[str, tuple[dict, dict, set]] = {
    "scbench_kv": ({}, {"input": str, "answer": str}, set()),
    "scbench_prefix_suffix": ({}, {"input": str, "answer": str}, set()),
    "scbench_vt": ({"index": int, "length": int}, {"input": str, "answer": list}, set()),
    "scbench_repoqa": ({"lang": str, "repo": str}, REPOQA_TURN, set()),
    "scbench_qa_eng": ({}, {"input": str, "answer": str}, set()),
    "scbench_qa_chn": ({}, {"input": str, "answer": str}, set()),
    "scbench_choice_eng": ({}, {"input": str, "answer": str, "options": list}, set()),
    "scbench_many_shot": ({"task": str}, {"input": str, "answer": str}, set()),
    "scbench_mf": ({}, {"input": str, "answer": int}, set()),
    "scbench_summary": ({}, {"input": str, "answer": str}, set()),
    "scbench_summary_with_needles": ({}, {"input": str, "answer": str, "task": str}, set()),
    "scbench_repoqa_and_kv": ({"lang": str, "repo": str}, {"input": str, "answer": str, "task": str, "name": str}, {"name"}),
}
# The hub card lists no `id` for these; scbench_vt names its context `input`.
NO_ID = {"scbench_prefix_suffix", "scbench_vt"}
CONTEXT_FIELD = {"scbench_vt": "input"}


def rows(config: str) -> list[dict]:
    with fixture_path(config).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_one_fixture_per_config_and_a_readme_line_each():
    from programs.registry import get_task

    shipped = sorted(c for c in configs() if get_task(c).fixture_file().parent == FIXTURES)
    assert sorted(p.stem for p in FIXTURES.glob("*.jsonl")) == shipped
    assert set(SCHEMA) <= set(shipped)  # every hub config has its fixture (and its documented layout below)
    readme = (FIXTURES / "README.md").read_text()
    for config in shipped:
        assert f"`{config}`" in readme


@pytest.mark.parametrize("config", configs())
def test_rows_validate_and_load(config):
    data = rows(config)
    assert len(data) == 2
    for position, row in enumerate(data):
        assert 2 <= len(row["multi_turns"]) <= 3
        sample = sample_from_row(row, fallback_id=position)
        assert sample_from_row(sample.to_row()) == sample
        assert hub_row(sample, config, position) == row  # the config's hub layout, exactly
    skipped = []
    samples = load_samples(config, "fixtures", on_skip=lambda ref, why: skipped.append(why))
    assert not skipped and [s.id for s in samples] == ["0", "1"]


@pytest.mark.parametrize("config", sorted(SCHEMA))
def test_exact_hub_schema(config):
    row_fields, turn_fields, optional = SCHEMA[config]
    context_field = CONTEXT_FIELD.get(config, "context")
    for row in rows(config):
        assert set(row) == {context_field, "multi_turns", *row_fields} | (set() if config in NO_ID else {"id"})
        assert config in NO_ID or isinstance(row["id"], int)
        context = row[context_field]
        if config == "scbench_mf":
            assert isinstance(context, list) and all(type(x) is int for x in context)
        else:
            assert isinstance(context, str)
            size = len(context) if config == "scbench_qa_chn" else len(context.split())
            assert size >= 40  # a few hundred words (characters, for Chinese)
        for key, kind in row_fields.items():
            assert isinstance(row[key], kind)
        for turn in row["multi_turns"]:
            assert set(turn) <= set(turn_fields) and set(turn_fields) - set(turn) <= optional
            for key, kind in turn_fields.items():
                if key in turn:
                    assert type(turn[key]) is kind, (key, turn[key])


def test_kv_and_prefix_suffix_gold_is_in_the_context():
    for row in rows("scbench_kv"):
        pairs = json.loads(row["context"].removeprefix("JSON data:\n"))
        for turn in row["multi_turns"]:
            key = re.search(r'Key: "(.+?)"', turn["input"]).group(1)
            assert pairs[key] == turn["answer"]
    for row in rows("scbench_prefix_suffix"):
        strings = row["context"].split("\n")
        for turn in row["multi_turns"]:
            prefix, suffix = re.search(r'starts with "(\w+)" and ends with "(\w+)"', turn["input"]).groups()
            assert [s for s in strings if s.startswith(prefix) and s.endswith(suffix)] == [turn["answer"]]


def test_vt_chains_resolve():
    for row in rows("scbench_vt"):
        values = resolve(row["input"])
        for turn in row["multi_turns"]:
            value = re.search(r"assigned the value (\d+)", turn["input"]).group(1)
            assert sorted(turn["answer"]) == sorted(v for v, x in values.items() if x == value)


def test_mf_answers_match_the_array():
    compute = {
        "largest": max,
        "smallest": min,
        "median": stats.median,
        "second largest distinct": lambda v: sorted(set(v))[-2],
        "second smallest distinct": lambda v: sorted(set(v))[1],
        "difference between": lambda v: max(v) - min(v),
        "count of negative": lambda v: sum(x < 0 for x in v),
    }
    for row in rows("scbench_mf"):
        assert any(x < 0 for x in row["context"]) and len(row["context"]) % 2 == 1
        for turn in row["multi_turns"]:
            target = re.findall(r"The .+ is", turn["input"])[0].lower()
            (fn,) = [f for k, f in compute.items() if target.startswith(f"the {k}")]
            assert turn["answer"] == fn(row["context"])


def test_text_answers_are_supported_by_the_context():
    for row in rows("scbench_qa_eng"):
        for turn in row["multi_turns"]:
            assert turn["answer"].lower() in row["context"].lower()
    for row in rows("scbench_qa_chn"):
        for turn in row["multi_turns"]:
            assert turn["answer"].strip("《》") in row["context"]
    for row in rows("scbench_choice_eng"):
        for turn in row["multi_turns"]:
            assert len(turn["options"]) == 4 == len(set(turn["options"]))
            assert turn["answer"] in turn["options"]  # the official scorer does options.index(answer)
    for row in rows("scbench_many_shot"):
        assert row["task"] and "A: (" in row["context"]
        for turn in row["multi_turns"]:
            assert re.fullmatch(r"\([A-G]\)", turn["answer"]) and f"\n{turn['answer']} " in turn["input"]
            assert turn["input"].endswith("A:")
    for row in rows("scbench_summary"):
        for k, turn in enumerate(row["multi_turns"], 1):
            assert f"Paper {k}:" in row["context"] and len(turn["answer"].split()) > 20


def test_mix_fixtures_alternate_and_their_gold_is_in_the_context():
    for row in rows("scbench_summary_with_needles"):
        tasks = [t["task"] for t in row["multi_turns"]]
        assert tasks == ["scbench_summary", "scbench_passkey", "scbench_summary"][: len(tasks)]
        for turn in row["multi_turns"]:
            if turn["task"] == "scbench_passkey":
                assert re.fullmatch(r"\d{5}", turn["answer"]) and f"pass key is {turn['answer']}." in row["context"]
    for row in rows("scbench_repoqa_and_kv"):
        tasks = [t["task"] for t in row["multi_turns"]]
        assert tasks == ["scbench_repoqa", "scbench_kv", "scbench_repoqa"][: len(tasks)]
        for turn in row["multi_turns"]:
            assert turn["answer"] in row["context"]
            if turn["task"] == "scbench_repoqa":
                assert turn["answer"].startswith(f"def {turn['name']}(")


def test_repoqa_offsets_point_at_the_gold_function():
    for row in rows("scbench_repoqa"):
        data, lines = row["context"].encode(), row["context"].split("\n")
        for turn in row["multi_turns"]:
            assert turn["answer"] == turn["func"] and turn["answer"].startswith(f"def {turn['name']}(")
            assert data[turn["global_start_byte"] : turn["global_end_byte"]].decode() == turn["answer"]
            assert "\n".join(lines[turn["global_start_line"] : turn["global_end_line"] + 1]) == turn["answer"]
            assert f"# File: {turn['path']}" in row["context"] and turn["name"] not in turn["description"]

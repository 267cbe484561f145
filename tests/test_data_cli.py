"""`python cli.py data ...`: list, generate, show."""

from __future__ import annotations

import json

from data.sample import sample_from_row
from tests.test_cli import cli


def test_list_names_every_registered_task():
    from programs.registry import all_tasks

    done = cli("data", "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [[t.config, t.name] for t in all_tasks()]
    assert lines[0].split()[:2] == ["scbench_kv", "kv"] and lines[0].split()[-1] == "generator"
    assert "-" == [l for l in lines if l.startswith("scbench_qa_eng")][0].split()[-1]


def test_generate_writes_valid_rows(tmp_path, tiny_model_path):
    out = tmp_path / "vt.jsonl"
    done = cli("data", "generate", "vt", "--out", str(out), "--samples", "2", "--context-tokens", "600", "--turns", "2", "--tokenizer", str(tiny_model_path))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(rows) == 2
    # The hub's scbench_vt layout: the context is `input`, and there is no `id`.
    assert all(set(r) == {"index", "input", "length", "multi_turns"} for r in rows)
    assert all(len(sample_from_row(r, fallback_id=i).turns) == 2 for i, r in enumerate(rows))


def test_generate_rejects_tasks_without_a_generator(tmp_path):
    done = cli("data", "generate", "qa_eng", "--out", str(tmp_path / "x.jsonl"))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: unknown generator 'qa_eng'.")
    assert not (tmp_path / "x.jsonl").exists()


def test_show_prints_the_turns_of_a_fixture():
    done = cli("data", "show", "scbench_choice_eng", "--index", "1")
    assert done.returncode == 0, done.stderr
    assert "turn 1" in done.stdout and "gold" in done.stdout
    out_of_range = cli("data", "show", "kv", "--index", "99")
    assert out_of_range.returncode == 2
    assert "out of range" in out_of_range.stderr

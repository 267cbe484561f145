"""The task registry, prompts, truncation and the official export (no server)."""

from __future__ import annotations

import json

import pytest

from data.loader import configs
from data.sample import Sample, Turn
from data.truncation import prompt_budget, truncate_prompt
from errors import UsageError
from programs import get_program, get_task, task_names
from programs.mf import statistic
from results.export import export_official
from tests.conftest import REPO


def test_every_task_module_is_registered():
    """Discovery finds every module of programs/ that registers a task, and nothing else."""
    import importlib
    import re

    from programs.spec import TaskSpec

    modules = [p.stem for p in (REPO / "programs").glob("*.py") if re.search(r"^\w+ = register_task\(", p.read_text(), re.M)]
    declared = [value.name for module in modules for value in vars(importlib.import_module(f"programs.{module}")).values()
                if isinstance(value, TaskSpec)]
    assert sorted(declared) == sorted(task_names()) and len(declared) == len(modules)
    assert task_names()[:3] == ["kv", "prefix_suffix", "vt"]  # SCBench's category order first


def test_the_registry_and_the_task_modules_import_no_sglang_or_torch():
    import subprocess
    import sys

    code = ("import sys; from programs.registry import all_tasks; tasks = all_tasks(); "
            "print(len(tasks), [m for m in ('sglang', 'torch', 'transformers') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.split(None, 1) == [str(len(task_names())), "[]\n"], done.stderr


def test_every_config_has_a_registered_task_with_both_programs():
    assert configs() == tuple(get_task(name).config for name in task_names())
    assert all(get_task(c).config == c for c in configs())
    for name in task_names():
        for mode in ("multi-turn", "multi-request"):
            program = get_program(name, mode)
            assert program.bind_arguments["task"] is get_task(name)


def test_unknown_task_suggests_the_closest():
    with pytest.raises(UsageError, match="unknown task 'qa_en'. Did you mean 'qa_eng'?"):
        get_task("qa_en")


@pytest.mark.parametrize(
    "task, turn, max_tokens",
    [
        ("kv", Turn("q", "a"), 150),
        ("repoqa", Turn("q", "a", {"name": "f"}), 1024),
        ("mf", Turn("The max is", 1), 5),
        ("summary_with_needles", Turn("q", "a", {"task": "scbench_passkey"}), 15),
        ("summary_with_needles", Turn("q", "a", {"task": "scbench_summary"}), 800),
        ("repoqa_and_kv", Turn("q", "a", {"task": "scbench_kv"}), 80),
    ],
)
def test_max_new_tokens_per_task_and_sub_task(task, turn, max_tokens):
    assert get_task(task).max_tokens(turn) == max_tokens


def test_choice_prompt_lists_the_options_as_scbench_does():
    turn = Turn("Who?", "Bob", {"options": ["Ann", "Bob", "Cy", "Di"]})
    assert get_task("choice_eng").query(turn) == "Question: Who?\nA. Ann\nB. Bob\nC. Cy\nD. Di\n\nThe the correct answer is"
    assert get_task("qa_eng").query(Turn("Who?", "Bob")) == "Question: Who?\nAnswer:"


def test_math_find_asks_the_statistic_before_the_array():
    sample = Sample("m", "[1, -2, 3]", (Turn("The largest number of the list is", 3), Turn("The smallest number of the list is", -2)))
    task = get_task("mf")
    assert statistic(sample.turns[1]) == "the smallest number of the list"
    assert task.shared_prefix(sample) == "What is the largest number of the list?\n\n[1, -2, 3]"
    assert task.query(sample.turns[0], first=True) == "The largest number of the list is"
    assert task.query(sample.turns[1]) == "What is the smallest number of the list?\n\nThe smallest number of the list is"


def test_prompt_budget_follows_the_official_runner():
    assert prompt_budget(10000, 150, 5, "multi-turn") == 10000 - 750
    assert prompt_budget(10000, 150, 5, "multi-request") == 10000 - 750 - 1000
    assert prompt_budget(10000, {"a": 800, "b": 15}, 4, "multi-turn") == 10000 - 815 * 4 // 2


def test_middle_truncation_keeps_both_ends(tiny_tokenizer):
    text = " ".join(f"w{i}" for i in range(400))
    cut = truncate_prompt(tiny_tokenizer, text, 100)
    assert cut.tokens_before > 100 and cut.tokens_after == 100 and cut.cut
    assert cut.text.startswith("w0 w1") and cut.text.endswith("w398 w399")
    assert cut.text == text[: cut.start] + text[cut.end :]
    assert len(tiny_tokenizer.encode(cut.text, add_special_tokens=False)) <= 102  # re-tokenising may merge at the seam
    same = truncate_prompt(tiny_tokenizer, "short text", 100)
    assert same.text == "short text" and not same.cut and same.tokens_before == same.tokens_after


def test_truncation_records_the_cut_and_refuses_an_empty_budget(tiny_tokenizer):
    text = " ".join(f"w{i}" for i in range(400))
    cut = truncate_prompt(tiny_tokenizer, text, 50)
    assert cut.record(50) == {"max_input_length": 50, "prompt_tokens_before": cut.tokens_before,
                              "prompt_tokens_after": 50, "cut_start": cut.start, "cut_end": cut.end}
    assert not truncate_prompt(tiny_tokenizer, text, -1).cut  # the official runner cuts nothing then
    with pytest.raises(ValueError, match="no room for the prompt"):
        truncate_prompt(tiny_tokenizer, text, 1)


def test_official_export_layout(tmp_path):
    records = [
        {"task": "choice_eng", "mode": "multi-turn", "sample_id": "x", "sample_index": 0, "turn": 1, "prediction": "B", "gold": "Bob",
         "turn_extras": {"options": ["Ann", "Bob", "Cy", "Di"]}, "sample_meta": {}},
        {"task": "choice_eng", "mode": "multi-turn", "sample_id": "x", "sample_index": 0, "turn": 0, "prediction": "A", "gold": "Ann",
         "turn_extras": {"options": ["Ann", "Bob", "Cy", "Di"]}, "sample_meta": {}},
        {"task": "repoqa_and_kv", "mode": "multi-request", "sample_id": "y", "sample_index": 2, "turn": 0, "prediction": "p", "gold": "def f(): pass",
         "turn_extras": {"task": "scbench_repoqa", "name": "f"}, "sample_meta": {"lang": "python", "repo": "r"}},
        {"task": "kv", "mode": "multi-turn", "sample_id": "z", "error": "boom"},
    ]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    paths = export_official(tmp_path)
    assert sorted(p.name for p in paths) == ["prediction_scbench_choice_eng_multi_turn.jsonl", "prediction_scbench_repoqa_and_kv_scdq.jsonl"]
    choice = [json.loads(l) for l in (tmp_path / "official" / "prediction_scbench_choice_eng_multi_turn.jsonl").read_text().splitlines()]
    assert choice == [
        {"id": 0, "turn_idx": 0, "prediction": "A", "ground_truth": ["Ann", "A"]},
        {"id": 0, "turn_idx": 1, "prediction": "B", "ground_truth": ["Bob", "B"]},
    ]
    (mix,) = [json.loads(l) for l in (tmp_path / "official" / "prediction_scbench_repoqa_and_kv_scdq.jsonl").read_text().splitlines()]
    assert mix == {"id": 2, "turn_idx": 0, "prediction": "p", "ground_truth": "def f(): pass", "task": "scbench_repoqa", "lang": "python", "repo": "r", "func_name": "f"}


def test_tasks_declare_their_official_export():
    """SCBench's `get_ground_truth` and the extra fields of its prediction lines (run_scbench.py):
    `[text, letter]` for choice_eng, `[answer]` for qa_eng, the answer as stored otherwise; `task`
    on Mix lines; `lang`, `repo` on RepoQA lines and `func_name` on their RepoQA turns only."""
    options = {"options": ["Ann", "Bob", "Cy", "Di"]}
    assert get_task("choice_eng").official_ground_truth("Bob", options) == ["Bob", "B"]
    assert get_task("qa_eng").official_ground_truth("Bob", {}) == ["Bob"]
    assert get_task("vt").official_ground_truth(["A", "B"], {}) == ["A", "B"]
    meta = {"lang": "python", "repo": "r", "other": 1}
    assert get_task("kv").official_fields({"task": "x"}, meta) == {}
    assert get_task("summary_with_needles").official_fields({"task": "scbench_passkey"}, {}) == {"task": "scbench_passkey"}
    assert get_task("repoqa").official_fields({"name": "f"}, meta) == {"lang": "python", "repo": "r", "func_name": "f"}
    mix = get_task("repoqa_and_kv")
    assert mix.official_fields({"task": "scbench_repoqa", "name": "f"}, meta) == {"task": "scbench_repoqa", "lang": "python", "repo": "r", "func_name": "f"}
    assert mix.official_fields({"task": "scbench_kv", "name": "f"}, meta) == {"task": "scbench_kv", "lang": "python", "repo": "r"}

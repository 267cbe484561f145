"""The official export scores under SCBench's own `compute_scores.py` exactly what `score` says.

Each test runs sessions through the runner's real record path (`bench.runner.run_session`, with the
SGLang program replaced by canned predictions), exports the records with `results.export`, scores the
exported files with the vendored official scorer (tests/reference/scbench_compute_scores.py) and
compares, like with like: per row, per group the official code averages (each turn in multi-turn
mode, the whole file in multi-request mode; per sub-task for the Mix tasks), and its printed result.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

import programs
from bench.display import PlainDisplay
from bench.runner import BenchSpec, plan_work, run_session, scoring_contexts
from data.loader import FIXTURES, fixture_path, load_samples
from data.sample import Sample, Turn
from programs.metrics.repoqa import function_similarity
from results import files
from results.export import export_official
from results.reader import load_run
from results.rescore import rescore_run
from tests.reference import scbench_compute_scores as official

MODES = ("multi-turn", "multi-request")
MODEL = "parity"
# Each Mix task's sub-tasks, in the order the official scorer prints them.
MIX_SUBTASKS = {task.name: task.sub_tasks for task in programs.all_tasks() if task.sub_tasks}
# Tasks whose official metric has no quirk that fixed mode corrects (in multi-turn mode).
SAME_IN_BOTH_MODES = ("kv", "prefix_suffix", "qa_eng", "choice_eng", "summary")

Maker = Callable[[Turn, Sample], str]


def fenced(code: str, lang: str = "python") -> str:
    return f"Here it is:\n```{lang}\n{code}\n```\n"


def other_needle(turn: Turn, sample: Sample) -> str:
    """Another function of the same sample (its first other RepoQA turn's code)."""
    others = [t.answer for t in sample.turns if t is not turn and "name" in t.extras and t.answer != turn.answer]
    return fenced(others[0], sample.metadata["lang"]) if others else "no other function"


def options(turn: Turn) -> list[str]:
    return list(turn.extras["options"])


def letter(turn: Turn) -> str:
    return "ABCD"[options(turn).index(turn.answer)]


def wrong_letter(turn: Turn) -> str:
    return next(c for c in "ABCD" if c != letter(turn))


def swapped_lines(text: str) -> str:
    sentences = [s.strip() for s in text.split(". ") if s.strip()]
    return "\n".join(reversed(sentences))


# Predictions per metric: exact, partial, wrong, and each metric's quirks. A turn gets the maker at
# (3 x session index + turn index) modulo the list's length, so the fixtures' sessions (two or three
# turns each) cycle through every list.
MAKERS: dict[str, list[Maker]] = {
    "kv": [
        lambda t, s: f'The value of the key is "{t.answer}".',
        lambda t, s: t.answer.upper(),  # case-sensitive: upper-cased hex is another string
        lambda t, s: t.answer[: len(t.answer) // 2],
        lambda t, s: "I do not know.",
    ],
    "prefix_suffix": [
        lambda t, s: f"The string is {t.answer}",
        lambda t, s: t.answer.swapcase(),
        lambda t, s: t.answer[:-3],
    ],
    "vt": [
        lambda t, s: ", ".join(t.answer),
        lambda t, s: t.answer[0].lower(),  # 1 of 3 names, case-insensitive -> 0.33
        lambda t, s: " ".join(t.answer[:2]),  # 0.67
        lambda t, s: "VAR XXXXX",
    ],
    "repoqa": [
        lambda t, s: fenced(t.answer, s.metadata["lang"]),
        other_needle,
        lambda t, s: "I could not find that function.",
        lambda t, s: t.answer,  # no code block: the whole output is compared
    ],
    "qa_eng": [
        lambda t, s: f"I believe it was {t.answer.lower()}.",
        lambda t, s: "nobody knows",  # a bare-string gold would score this 1 (its 'o' and 's')
        lambda t, s: t.answer.split()[-1][:-1] or "x",
    ],
    "qa_chn": [
        lambda t, s: t.answer,  # officially 2/(n+1) per character, not 1
        lambda t, s: f"答案是{t.answer}。",
        lambda t, s: t.answer[0],
        lambda t, s: "不知道",
    ],
    "choice_eng": [
        lambda t, s: f"{letter(t)}. {t.answer}",
        lambda t, s: f"The answer is {letter(t)}",
        lambda t, s: t.answer,
        lambda t, s: f"Based on the text, {letter(t)}",  # quirk: the leading "B" decides
        lambda t, s: wrong_letter(t),
        lambda t, s: f"The answer is ({letter(t)})",  # quirk: "(" does not start a label
    ],
    "many_shot": [
        lambda t, s: t.answer,
        lambda t, s: "(A)" if t.answer != "(A)" else "(C)",  # quirk: any character of the gold
        lambda t, s: f"the answer is {t.answer.strip('()')}",
        lambda t, s: "none",
    ],
    "mf": [
        lambda t, s: str(t.answer),  # a negative gold is never read officially
        lambda t, s: f"{t.answer}.7",  # truncated toward zero
        lambda t, s: str(-t.answer),  # a wrong sign matches officially when the gold is positive
        lambda t, s: str(t.answer + 1),
        lambda t, s: "no idea",
    ],
    "summary": [
        lambda t, s: t.answer,
        lambda t, s: " ".join(t.answer.split()[: len(t.answer.split()) // 2]),
        lambda t, s: swapped_lines(t.answer),  # one line per sentence: ROUGE-Lsum's union LCS
        lambda t, s: "",
    ],
    "passkey": [
        lambda t, s: f"The pass key is {t.answer}.",
        lambda t, s: f"0{t.answer}",  # leading zero: another digit run
        lambda t, s: f"{t.answer[:2]},{t.answer[2:]}",
        lambda t, s: "none",
    ],
}
MIX_MAKERS = {"scbench_summary": "summary", "scbench_passkey": "passkey", "scbench_repoqa": "repoqa", "scbench_kv": "kv"}


def maker_predictions(task: str) -> Callable[[Turn, Sample, int, int], str]:
    def predict(turn: Turn, sample: Sample, turn_index: int, session_index: int) -> str:
        metric = MIX_MAKERS[turn.extras["task"]] if task in MIX_SUBTASKS else task
        makers = MAKERS[metric]
        return makers[(3 * session_index + turn_index) % len(makers)](turn, sample)

    return predict


# --------------------------------------------------------------------------------------------------
# running sessions through the runner's record path


class CannedProgram:
    """Stands in for the task's SGLang program: answers each asked turn with `predict`."""

    def __init__(self, predict, positions: dict[str, int]):
        self.predict, self.positions = predict, positions

    def run(self, *, sample: Sample, max_turns: int | None, **program_arguments):
        results = [
            {"turn": i, "prediction": self.predict(turn, sample, i, self.positions[sample.id]), "prompt_tokens": 100,
             "cached_tokens": 0, "completion_tokens": 5, "latency": 0.01, "finish_reason": "stop", "request_id": None}
            for i, turn in enumerate(sample.turns[:max_turns])
        ]
        return SimpleNamespace(error=lambda: None, ret_value=results)


def run_point(tmp_path: Path, monkeypatch, task: str, data: str, predict, max_turns: int | None = None) -> Path:
    """A run directory of one task in both modes, as `cli.py bench` writes it, plus its export."""
    run_dir = tmp_path / f"{task}-run"
    run_dir.mkdir()
    spec = BenchSpec(tasks=(task,), modes=MODES, data=data, num_samples=50, max_turns=max_turns,
                     chat_template=False, flush_between_sessions=False)
    planned = plan_work(spec, len, run_dir, PlainDisplay(io.StringIO()))
    contexts = scoring_contexts(planned, spec.max_turns)
    positions = {sample.id: index for _, _, sample, index in planned}
    monkeypatch.setattr(programs, "get_program", lambda name, mode: CannedProgram(predict, positions))
    backend = SimpleNamespace(flush_cache=lambda: None, for_session=lambda namespace: None)
    conn = SimpleNamespace(chat_format=None, backend=backend, tokenizer=None)
    for task_spec, mode, sample, index in planned:
        outcome = run_session(conn, task_spec, sample, mode, spec, len, index, contexts[(task_spec.name, mode)])
        assert outcome.error is None
        files.append_jsonl_many(run_dir / files.SAMPLES, [r.to_dict() for r in outcome.records])
    export_official(run_dir)
    return run_dir


def records_of(run_dir: Path, mode: str) -> list[dict]:
    records = [r.to_dict() for r in load_run(run_dir).records if r.mode == mode]
    return sorted(records, key=lambda r: (r["sample_index"], r["turn"]))


def exported(run_dir: Path, task: str, mode: str) -> Path:
    return run_dir / "official" / f"prediction_scbench_{task}_{'scdq' if mode == 'multi-request' else 'multi_turn'}.jsonl"


# --------------------------------------------------------------------------------------------------
# the official scorer's numbers, and the project's grouped the same way


def official_result(path: Path, task: str, mode: str, monkeypatch) -> tuple[str, list[list[float]]]:
    """`compute_scores` on an exported file: its printed result and the per-row scores of every
    group it averages, in the order it averages them (spied on, not recomputed)."""
    groups: list[list[float]] = []
    real_get_score, real_repoqa = official.get_score, official.compute_repoqa_score

    def get_score(labels, preds, data_name, model_name):
        groups.append([official.get_score_one(p, l, data_name, model_name) for l, p in zip(labels, preds)])
        return real_get_score(labels, preds, data_name, model_name)

    def compute_repoqa_score(model_name, preds, labels, needle_by_repo, ignore_comments=False):
        out = real_repoqa(model_name, preds, labels, needle_by_repo, ignore_comments)
        results = out[model_name]["results"]
        assert len(results) == 1, "one language per file keeps the rows in file order"
        (rows,) = results.values()
        groups.append([float(r["is_best_similar"] and r["best_similar_score"] >= 0.8) for r in rows])
        return out

    monkeypatch.setattr(official, "get_score", get_score)
    monkeypatch.setattr(official, "compute_repoqa_score", compute_repoqa_score)
    printed = official.compute_scores(path, f"scbench_{task}", MODEL, scdq_mode=mode == "multi-request")
    monkeypatch.undo()
    return printed, groups


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def project_result(rows: list[dict], records: list[dict], task: str, mode: str) -> tuple[str, list[list[float]]]:
    """The records' `score` grouped and printed as `compute_scores` does for the exported rows."""
    if mode == "multi-request":
        buckets = [list(range(len(rows)))]
    else:
        by_turn: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            by_turn.setdefault(row["turn_idx"], []).append(i)
        buckets = list(by_turn.values())
    groups, printed = [], []
    for bucket in buckets:
        if task not in MIX_SUBTASKS:
            groups.append([records[i]["score"] for i in bucket])
            printed.append(f"{_mean(groups[-1]) * 100:.3f}")
            continue
        for sub in MIX_SUBTASKS[task]:
            chosen = [records[i]["score"] for i in bucket if rows[i]["task"] == sub]
            if chosen:
                groups.append(chosen)
            printed.append(f"{_mean(chosen) * 100:.3f}" if chosen else f"{0 * 100:.3f}")
    return ",".join(printed), groups


def assert_parity(run_dir: Path, task: str, monkeypatch) -> dict[str, list[dict]]:
    """Both modes' exported files score officially what the records say; returns the records."""
    by_mode = {}
    for mode in MODES:
        path = exported(run_dir, task, mode)
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        records = records_of(run_dir, mode)
        assert [(r["id"], r["turn_idx"]) for r in rows] == [(r["sample_index"], r["turn"]) for r in records]
        printed, groups = official_result(path, task, mode, monkeypatch)
        expected_printed, expected_groups = project_result(rows, records, task, mode)
        assert len(groups) == len(expected_groups)
        for got, want in zip(groups, expected_groups):
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert printed == expected_printed
        by_mode[mode] = records
    return by_mode


def assert_rescore_restores(run_dir: Path) -> None:
    """`rescore` recomputes every score from the saved predictions, with the same run context."""
    before = [r.to_dict() for r in load_run(run_dir).records]
    files.write_jsonl_atomic(run_dir / files.SAMPLES, [{**r, "score": None, "score_fixed": None} for r in before])
    result = rescore_run(load_run(run_dir), ("official", "fixed"))
    assert result["changed"] == len(before) and not result["notes"]
    after = [r.to_dict() for r in load_run(run_dir).records]
    assert [(r["score"], r["score_fixed"]) for r in after] == [(r["score"], r["score_fixed"]) for r in before]


# --------------------------------------------------------------------------------------------------
# every task, both modes, on the fixtures


@pytest.mark.parametrize("task", programs.task_names())
def test_exported_fixture_runs_score_officially_what_score_says(task, tmp_path, monkeypatch):
    run_dir = run_point(tmp_path, monkeypatch, task, FIXTURES, maker_predictions(task))
    by_mode = assert_parity(run_dir, task, monkeypatch)
    scores = [r["score"] for records in by_mode.values() for r in records]
    assert len(set(scores)) >= 2, f"{task}: the predictions must exercise more than one outcome"
    if task in SAME_IN_BOTH_MODES:
        assert [r["score_fixed"] for r in by_mode["multi-turn"]] == [r["score"] for r in by_mode["multi-turn"]]
    assert_rescore_restores(run_dir)


def test_qa_eng_ground_truth_is_the_answer_in_a_list(tmp_path, monkeypatch):
    run_dir = run_point(tmp_path, monkeypatch, "qa_eng", FIXTURES, lambda t, s, i, k: "nobody knows")
    rows = [json.loads(line) for line in exported(run_dir, "qa_eng", "multi-turn").read_text().splitlines()]
    samples = load_samples("scbench_qa_eng", FIXTURES)
    assert [r["ground_truth"] for r in rows] == [[t.answer] for s in samples for t in s.turns]
    assert all("task" not in r for r in rows)
    # A bare string would have been iterated character by character: "nobody knows" would pass.
    assert official.get_score_one("nobody knows", rows[0]["ground_truth"][0], "longdialogue_qa_eng", MODEL) == 1.0
    assert all(r["score"] == 0.0 for r in records_of(run_dir, "multi-turn"))
    assert_parity(run_dir, "qa_eng", monkeypatch)


# --------------------------------------------------------------------------------------------------
# RepoQA: the run's asked needles of the same repo (official) vs the session's own (fixed)


def _write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _variant(code: str) -> str:
    """The function with its first line's name changed: a near copy under another name."""
    first, _, rest = code.partition("(")
    return f"{first}_copy({rest}"


def two_rows_of_one_repo(tmp_path: Path) -> tuple[str, dict, dict]:
    """Fixture row 0 of RepoQA, and a second row of the same repo whose turn 1 is a near copy of the
    first row's turn 0 function (so it is the better match for that function's exact text)."""
    (row,) = [json.loads(line) for line in fixture_path("scbench_repoqa").read_text().splitlines()[:1]]
    gold = row["multi_turns"][0]
    copy = {**gold, "name": f"{gold['name']}_copy", "answer": _variant(gold["answer"]), "func": _variant(gold["answer"])}
    second = {**row, "id": 1, "multi_turns": [row["multi_turns"][1], copy]}
    return _write_rows(tmp_path / "repoqa.jsonl", [row, second]), row, copy


def test_repoqa_official_needles_are_every_asked_turn_of_the_repo(tmp_path, monkeypatch):
    data, row, copy = two_rows_of_one_repo(tmp_path)
    gold = row["multi_turns"][0]
    assert function_similarity(copy["answer"], gold["answer"]) >= 0.8  # the gold alone would pass

    def predict(turn, sample, turn_index, session_index):
        # session 0, turn 0: the near copy's text, which session 1 asks at turn 1
        return fenced(copy["answer"]) if (session_index, turn_index) == (0, 0) else fenced(turn.answer)

    run_dir = run_point(tmp_path, monkeypatch, "repoqa", data, predict)
    by_mode = assert_parity(run_dir, "repoqa", monkeypatch)
    for records in by_mode.values():
        first = records[0]
        assert (first["sample_index"], first["turn"]) == (0, 0)
        assert first["score"] == 0.0  # the copy (asked in session 1) is the best needle of the repo
        assert first["score_fixed"] == 1.0  # the session's own needles: the gold is best, BLEU >= 0.8
        assert all(r["score"] == r["score_fixed"] == 1.0 for r in records[1:])
    assert_rescore_restores(run_dir)


def test_repoqa_needles_leave_out_turns_cut_by_max_turns(tmp_path, monkeypatch):
    data, row, copy = two_rows_of_one_repo(tmp_path)

    def predict(turn, sample, turn_index, session_index):
        return fenced(copy["answer"]) if (session_index, turn_index) == (0, 0) else fenced(turn.answer)

    # Only turn 0 of each session is asked: the copy (session 1, turn 1) is no needle of the run.
    run_dir = run_point(tmp_path, monkeypatch, "repoqa", data, predict, max_turns=1)
    by_mode = assert_parity(run_dir, "repoqa", monkeypatch)
    for records in by_mode.values():
        assert [(r["sample_index"], r["turn"]) for r in records] == [(0, 0), (1, 0)]
        assert [r["score"] for r in records] == [1.0, 1.0]
        assert [r["score_fixed"] for r in records] == [1.0, 1.0]
    assert_rescore_restores(run_dir)


def test_repoqa_fixed_needles_are_the_sessions_asked_turns_only(tmp_path, monkeypatch):
    (row,) = [json.loads(line) for line in fixture_path("scbench_repoqa").read_text().splitlines()[:1]]
    gold = row["multi_turns"][0]
    copy = {**gold, "name": f"{gold['name']}_copy", "answer": _variant(gold["answer"])}
    data = _write_rows(tmp_path / "one.jsonl", [{**row, "multi_turns": [gold, copy]}])

    # Turn 1 (the copy) is not asked: it is a needle in neither mode.
    run_dir = run_point(tmp_path, monkeypatch, "repoqa", data, lambda t, s, i, k: fenced(copy["answer"]), max_turns=1)
    by_mode = assert_parity(run_dir, "repoqa", monkeypatch)
    for records in by_mode.values():
        assert [(r["score"], r["score_fixed"]) for r in records] == [(1.0, 1.0)]


# --------------------------------------------------------------------------------------------------
# Mix.RepoQA+KV in multi-request mode: the KV turns score 0 officially


def test_repoqa_and_kv_multi_request_kv_turns_score_zero_officially(tmp_path, monkeypatch):
    exact = lambda turn, sample, i, k: fenced(turn.answer) if turn.extras["task"] == "scbench_repoqa" else turn.answer
    run_dir = run_point(tmp_path, monkeypatch, "repoqa_and_kv", FIXTURES, exact)
    by_mode = assert_parity(run_dir, "repoqa_and_kv", monkeypatch)
    for mode, records in by_mode.items():
        kv = [r for r in records if r["turn_extras"]["task"] == "scbench_kv"]
        repoqa = [r for r in records if r["turn_extras"]["task"] == "scbench_repoqa"]
        assert kv and repoqa
        assert all(r["score_fixed"] == 1.0 for r in kv)
        assert all(r["score"] == (0.0 if mode == "multi-request" else 1.0) for r in kv)
        assert all(r["score"] == r["score_fixed"] == 1.0 for r in repoqa)
    printed, _ = official_result(exported(run_dir, "repoqa_and_kv", "multi-request"), "repoqa_and_kv", "multi-request", monkeypatch)
    assert printed == "100.000,0.000"


# --------------------------------------------------------------------------------------------------
# nothing is dropped on the way to the record and the export


def test_long_options_and_long_gold_survive_the_record_and_the_export(tmp_path, monkeypatch):
    (row,) = load_samples("scbench_choice_eng", FIXTURES)[:1]
    padding = " and then the orchard was sold" * 100  # > 2,000 characters per option
    turns = []
    for turn in row.to_row()["multi_turns"]:
        opts = [o + padding for o in turn["options"]]
        turns.append({**turn, "options": opts, "answer": turn["answer"] + padding})
    data = _write_rows(tmp_path / "long.jsonl", [{**row.to_row(), "multi_turns": turns}])

    run_dir = run_point(tmp_path, monkeypatch, "choice_eng", data, lambda t, s, i, k: "ABCD"[list(t.extras["options"]).index(t.answer)])
    by_mode = assert_parity(run_dir, "choice_eng", monkeypatch)
    rows = [json.loads(line) for line in exported(run_dir, "choice_eng", "multi-turn").read_text().splitlines()]
    for turn, record, exported_row in zip(turns, by_mode["multi-turn"], rows):
        assert len(str(turn["options"])) > 2000 and len(turn["answer"]) > 2000
        assert record["turn_extras"]["options"] == turn["options"]
        assert record["gold"] == turn["answer"]
        assert exported_row["ground_truth"] == [turn["answer"], "ABCD"[turn["options"].index(turn["answer"])]]
        assert record["score"] == 1.0


def test_long_turn_extras_and_metadata_are_kept_whole(tmp_path, monkeypatch):
    (row,) = [json.loads(line) for line in fixture_path("scbench_repoqa").read_text().splitlines()[:1]]
    long_description = "Describes the function. " * 200
    row = {**row, "notes": "n" * 5000, "multi_turns": [{**t, "description": long_description} for t in row["multi_turns"]]}
    data = _write_rows(tmp_path / "long-repo.jsonl", [row])
    run_dir = run_point(tmp_path, monkeypatch, "repoqa", data, lambda t, s, i, k: fenced(t.answer))
    (sample,) = load_samples("scbench_repoqa", data)
    for record in records_of(run_dir, "multi-turn"):
        assert record["turn_extras"] == sample.turns[record["turn"]].extras
        assert record["sample_meta"] == sample.metadata
    assert_parity(run_dir, "repoqa", monkeypatch)

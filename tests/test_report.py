"""Reports from run directories on disk: SCBench's category math, the three layouts, figures,
rescoring and comparing. No server: runs are written by hand here."""

from __future__ import annotations

import json
import random

import pytest

from results import files
from results.reader import load_runs
from results.records import TurnRecord
from results.report import build_report, compare_rows
from results.rescore import rescore_run
from tests.test_cli import cli

MODES = ("multi-turn", "multi-request")


CATEGORY = {"kv": "String Retrieval", "prefix_suffix": "String Retrieval", "vt": "String Retrieval",
            "qa_eng": "Semantic Retrieval", "choice_eng": "Semantic Retrieval", "many_shot": "Global Information",
            "summary": "Global Information", "summary_with_needles": "Multi-task"}


def rec(task, score, *, method="full", budget=None, mode="multi-turn", sample="s0", turn=0, fixed=None,
        kept=None, prediction="", gold="", error=None, label=None, **settings):
    """One samples.jsonl record as bench writes it (a failed session's record has no turn). A budget
    is a `--budgets` sweep's (label "<method>-b<budget>") unless `label` says otherwise."""
    base = dict(
        task=task, mode=mode, sample_id=sample, sample_index=int(sample[1:]), category=CATEGORY.get(task),
        point=label or (method if budget is None else f"{method}-b{budget}"), method=method,
        method_settings={"method": method, **({} if budget is None else {"budget": budget}), **settings}, budget=budget,
    )
    if error:
        return TurnRecord(**base, error=error, session_turns=1)
    return TurnRecord(
        **base, turn=turn, prediction=prediction, gold=gold, question="q",
        score=score, score_fixed=score if fixed is None else fixed,
        prompt_tokens=1000, cached_tokens=0 if mode == "multi-turn" and turn == 0 else 900,
        completion_tokens=10, latency=0.1, kept_kv=kept, context_tokens=900,
    )


def write_run(path, records, header=None, contexts=None):
    """A run directory: header.json, samples.jsonl, summary.json, contexts/<task>.jsonl."""
    from results.summary import summarize

    path.mkdir(parents=True)
    files.write_json_atomic(path / files.HEADER, header or {"format_version": 2, "argv": ["cli.py", "bench"]})
    files.write_jsonl_atomic(path / files.SAMPLES, [r.to_dict() for r in records])
    files.write_json_atomic(path / files.SUMMARY, summarize(records, wall_seconds=1.5).to_dict())
    for task, rows in (contexts or {}).items():
        (path / files.CONTEXTS).mkdir(exist_ok=True)
        files.write_jsonl_atomic(path / files.CONTEXTS / f"{task}.jsonl", rows)
    return path


def write_sweep(root, points, with_sweep_json=True):
    """A sweep directory: one point directory per label (points: label -> records)."""
    for label, records in points.items():
        first = records[0]
        write_run(root / label, records, {"format_version": 2, "method": first.method_settings, "method_label": label,
                                          "budget": first.budget})
    if with_sweep_json:
        files.write_json_atomic(root / "sweep.json", {"format_version": 2, "points": list(points), "argv": ["cli.py", "bench"]})
    return root


def realistic_points(seed=0):
    """A budget sweep that looks like a real one: full, snapkv and streamingllm at three budgets, seven
    tasks over the four categories, 2 sessions x 4 turns, both modes. Smaller budgets and later turns
    score lower; multi-request (query-agnostic compression) lower still."""
    rng = random.Random(seed)
    tasks = {"kv": 0.9, "prefix_suffix": 0.7, "qa_eng": 0.5, "choice_eng": 0.6, "many_shot": 0.4, "summary": 0.3,
             "summary_with_needles": 0.45}
    points = {}
    for method, budgets in (("full", [None]), ("snapkv", [512, 1024, 2048]), ("streamingllm", [512, 1024, 2048])):
        for budget in budgets:
            keep = 1.0 if budget is None else min(1.0, budget / 4096)
            quality = 1.0 if budget is None else keep ** (0.35 if method == "snapkv" else 0.8)
            records = []
            for mode in MODES:
                drop = 0.0 if mode == "multi-turn" or budget is None else 0.15
                for task, base in tasks.items():
                    for s in range(2):
                        for turn in range(4):
                            score = base * quality * (1 - drop) * (1 - 0.05 * turn) + rng.uniform(-0.05, 0.05)
                            kept = None if budget is None else keep * (0.9 + 0.05 * turn)
                            records.append(rec(task, round(min(1, max(0, score)), 3), method=method, budget=budget,
                                               mode=mode, sample=f"s{s}", turn=turn, kept=kept))
            points["full" if budget is None else f"{method}-b{budget}"] = records
    return points


# --- category math -------------------------------------------------------------------------------

def hand_made():
    """full, multi-turn: kv 1,0,1 (2/3); vt 0.5; qa_eng 0.2,0.4 (0.3) plus a failed session;
    summary official 0.1 / fixed 0.5. snapkv-b512, multi-request: kv 0, qa_eng 1."""
    return [
        rec("kv", 1.0, turn=0), rec("kv", 0.0, turn=1), rec("kv", 1.0, sample="s1", turn=0),
        rec("vt", 0.5, turn=0),
        rec("qa_eng", 0.2, turn=0), rec("qa_eng", 0.4, turn=1), rec("qa_eng", None, sample="s1", error="boom"),
        rec("summary", 0.1, fixed=0.5, turn=0),
        rec("kv", 0.0, method="snapkv", budget=512, mode="multi-request", kept=0.25),
        rec("qa_eng", 1.0, method="snapkv", budget=512, mode="multi-request", kept=0.75),
    ]


def test_category_scores_average_tasks_then_categories():
    report = build_report(hand_made(), "official")
    full, snap = report["categories"]
    assert (full["label"], full["mode"], snap["label"], snap["mode"]) == ("full", "multi-turn", "snapkv-b512", "multi-request")
    # String Retrieval: mean of kv (2/3) and vt (0.5), not of the four records (0.625).
    assert full["scores"]["String Retrieval"] == pytest.approx(7 / 12)
    assert full["scores"]["Semantic Retrieval"] == pytest.approx(0.3)
    assert full["scores"]["Global Information"] == pytest.approx(0.1)
    assert full["scores"]["Multi-task"] is None
    assert full["avg"] == pytest.approx((7 / 12 + 0.3 + 0.1) / 3)
    assert snap["avg"] == pytest.approx(0.5) and snap["kept_kv"] == pytest.approx(0.5)
    qa = next(r for r in report["task_scores"] if r["task"] == "qa_eng" and r["label"] == "full")
    assert (qa["records"], qa["sessions"], qa["failed_sessions"]) == (2, 1, 1)
    assert report["notes"] == ["full qa_eng multi-turn: 1 failed session(s), not scored"]
    # Turn 1: mean over tasks of each task's turn-1 mean: kv 1, vt 0.5, qa_eng 0.2, summary 0.1.
    turn1 = next(r for r in report["turns"] if r["label"] == "full" and r["turn"] == 1)
    assert turn1["score"] == pytest.approx((1 + 0.5 + 0.2 + 0.1) / 4) and turn1["records"] == 5


def test_fixed_scoring_uses_score_fixed():
    full = build_report(hand_made(), "fixed")["categories"][0]
    assert full["scores"]["Global Information"] == pytest.approx(0.5)


def test_category_table_text():
    from rich.console import Console

    from results.tables import category_tables

    console = Console(width=160, record=True)
    for table in category_tables(build_report(hand_made())):
        console.print(table)
    text = console.export_text()
    assert "│ full        │             58.3 │               30.0 │               10.0 │          - │ 32.8 │" in text
    assert "│ snapkv-b512 │              0.0 │              100.0 │                  - │          - │ 50.0 │" in text
    assert "│ snapkv-b512 │                - │                  - │                  - │          - │    - │" in text


def test_every_scbench_task_has_a_category():
    from programs.registry import all_tasks
    from results.migrate import V1_TASK_CATEGORIES
    from results.report import CATEGORIES

    categories = {t.name: t.category for t in all_tasks() if t.name in V1_TASK_CATEGORIES}
    # Version 1 records are given the categories the tasks have today.
    assert categories == V1_TASK_CATEGORIES and set(categories.values()) == set(CATEGORIES)


# --- layouts -------------------------------------------------------------------------------------

def test_the_three_layouts_load(tmp_path):
    points = {"snapkv-b512": [rec("kv", 1.0, method="snapkv", budget=512)], "full": [rec("kv", 0.0)]}
    sweep = write_sweep(tmp_path / "sweep", points)
    (sweep / "report").mkdir()  # figures of an earlier report are no run
    assert [r.path.name for r in load_runs([sweep])] == ["snapkv-b512", "full"]  # sweep.json's order
    bare = write_sweep(tmp_path / "bare", points, with_sweep_json=False)
    assert [r.path.name for r in load_runs([bare])] == ["full", "snapkv-b512"]
    point = load_runs([sweep / "full"])
    assert len(point) == 1 and point[0].header.method_label == "full"
    # Older runs (format 1): one directory, methods mixed, no budget; the oldest records name no method.
    old = [rec("kv", 1.0, method="snapkv").to_dict(), rec("kv", 0.5).to_dict()]
    for r in old:
        del r["format_version"], r["category"], r["method_settings"], r["budget"], r["point"]
    del old[1]["method"]
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    (old_dir / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    (run,) = load_runs([old_dir])
    report = build_report(run.records)
    assert [m["label"] for m in report["methods"]] == ["snapkv", "full"]
    assert [r.category for r in run.records] == ["String Retrieval"] * 2
    assert load_runs([sweep, sweep / "full"])[1:] == load_runs([sweep / "full"])  # named twice: once


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "no-such", "{p}/no-such: no such file or folder"),
    (lambda p: p, "{p} is not a run directory: no samples.jsonl in it or its subfolders"),
])
def test_bad_paths_give_one_line_and_exit_2(tmp_path, make, message):
    done = cli("report", str(make(tmp_path)))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "error: " + message.format(p=tmp_path)


# --- figures -------------------------------------------------------------------------------------

def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plots_are_written(tmp_path):
    from results.plots import write_plots

    sweep = write_sweep(tmp_path / "sweep", realistic_points())
    runs = load_runs([sweep])
    notes = []
    paths = write_plots(build_report([r for run in runs for r in run.records]), tmp_path / "fig", notes.append)
    assert [p.name for p in paths] == ["score_per_turn.png", "signal_per_turn.png", "score_vs_budget.png", "kept_vs_score.png"]
    for path in paths:
        width, height = png_size(path)
        assert width > 600 and height > 300
    assert notes == []


def test_budget_plot_is_skipped_without_a_budget_sweep(tmp_path):
    from results.plots import write_plots

    notes = []
    paths = write_plots(build_report(hand_made()), tmp_path, notes.append)
    assert [p.name for p in paths] == ["score_per_turn.png", "kept_vs_score.png"]
    assert notes[0].startswith("signal_per_turn.png skipped")  # no gold likelihoods, no turn full also ran
    assert notes[1].startswith("score_vs_budget.png skipped: no method ran at more than one budget")


def test_report_cli_json_and_default_figure_folder(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", realistic_points())
    done = cli("report", str(sweep), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["modes"] == list(MODES) and len(data["methods"]) == 7
    assert [p.split("/")[-1] for p in data["plots"]] == [
        "score_per_turn.png", "signal_per_turn.png", "score_vs_budget.png", "kept_vs_score.png"]
    assert all((sweep / "report" / name).is_file() for name in ("score_per_turn.png", "kept_vs_score.png"))
    done = cli("report", str(sweep), "--no-plots", "--scoring", "fixed")
    assert done.returncode == 0 and "SCBench by category, multi-request (score x100, fixed scoring)" in done.stdout
    done = cli("report", str(sweep), "--scoring", "fixd")
    assert done.returncode == 2 and done.stderr.strip() == "error: unknown scoring 'fixd'. Valid: official, fixed"


# --- rescoring -----------------------------------------------------------------------------------

def test_rescore_fixes_a_wrong_score_and_leaves_right_ones(tmp_path):
    row = {"id": "kv-0", "context": "k1: v-one\nk2: v-two",
           "multi_turns": [{"input": "k1?", "answer": "v-one"}, {"input": "k2?", "answer": "v-two"}]}
    records = [
        rec("kv", 0.0, sample="s0", turn=0, prediction="it is v-one", gold="v-one"),  # wrong: should be 1
        rec("kv", 0.0, sample="s0", turn=1, prediction="no idea", gold="v-two"),  # right
        rec("kv", None, sample="s1", error="server gone"),
    ]
    records = [r.replace(sample_id="kv-0") if r.sample_id == "s0" else r for r in records]
    run_dir = write_run(tmp_path / "run", records, contexts={"kv": [row]})
    done = cli("rescore", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{run_dir.resolve()}: 1 of 2 records rescored with a different score (official 1, fixed 1)"
    after = load_runs([run_dir])[0].records
    assert [(r.score, r.score_fixed) for r in after] == [(1.0, 1.0), (0.0, 0.0), (None, None)]
    summary = json.loads((run_dir / files.SUMMARY).read_text())
    assert summary["results"][0]["score"] == 0.5 and summary["wall_seconds"] == 1.5
    (run,) = load_runs([run_dir])
    assert rescore_run(run, ("official",))["changed"] == 0  # a second pass changes nothing


def test_rescore_without_contexts_keeps_scores(tmp_path):
    run_dir = write_run(tmp_path / "old", [rec("kv", 0.0, prediction="x", gold="x")])
    (run,) = load_runs([run_dir])
    result = rescore_run(run, ("official", "fixed"))
    assert result["changed"] == 0 and "no contexts/kv.jsonl" in result["notes"][0]
    assert load_runs([run_dir])[0].records[0].score == 0.0


# --- comparing -----------------------------------------------------------------------------------

def test_compare_pairs_methods_and_single_points():
    a = build_report([rec("kv", 0.5), rec("qa_eng", 0.2)])
    b = build_report([rec("kv", 0.75), rec("vt", 1.0)])
    rows = {(r["method"], r["task"]): r for r in compare_rows(a, b)}
    assert rows[("full", "kv")]["delta"] == pytest.approx(0.25)
    assert rows[("full", "qa_eng")]["b"] is None and rows[("full", "qa_eng")]["delta"] is None
    assert rows[("full", "Avg")]["delta"] == pytest.approx(0.875 - 0.35)
    # Two single points of one sweep pair by task.
    c = build_report([rec("kv", 0.25, method="snapkv", budget=512)])
    rows = compare_rows(a, c)
    assert rows[0]["method"] == "full vs snapkv-b512" and rows[0]["delta"] == pytest.approx(-0.25)


def test_compare_cli_shows_deltas(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", realistic_points())
    done = cli("compare", str(sweep / "full"), str(sweep / "snapkv-b512"))
    assert done.returncode == 0, done.stderr
    line = next(l for l in done.stdout.splitlines() if "full vs snapkv-b512" in l and " kv " in l)
    a, b, delta = line.split("│")[4:7]
    assert float(delta) == pytest.approx(float(b) - float(a), abs=0.11) and float(delta) < 0

"""Damaged run files, reused sweep names and finished points that lost records.

- A damaged file is one line naming it and the problem, exit 2, in report, rescore, compare, the
  step-through viewer and a resumed bench; a resumed bench finds it before it writes anything or
  runs any point; a torn last line is dropped.
- A sweep never mixes arguments: `--name` of a sweep made with other arguments is refused, naming
  each argument that differs, before anything is written.
- A point marked finished is checked again: lost sessions run again, a lost summary is rebuilt.

Benches run the real sweep code without a server (`tests.canned_sweep`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from results import files
from results.checks import RunFormatError
from tests import canned_sweep
from tests.conftest import REPO
from tests.test_cli import cli
from tests.test_results_package import RUN_V1, current_run, run_v1  # noqa: F401  (fixtures)

DEEP = b"[" * 100_000 + b"]" * 100_000


def replace_line(path: Path, number: int, text: bytes) -> str:
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = text
    path.write_bytes(b"\n".join(lines))
    return f"{path} line {number}"


def whole(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def edit_record(point: Path, number: int, **changes) -> str:
    path = point / files.SAMPLES
    line = json.loads(path.read_text().splitlines()[number - 1])
    return replace_line(path, number, json.dumps({**line, **changes}).encode())


# --- report, rescore, compare, tui --------------------------------------------------------------

READ_DAMAGES = {
    "a deeply nested record line": (lambda p: replace_line(p / files.SAMPLES, 2, DEEP), "JSON nested too deeply to read"),
    "a deeply nested last line": (lambda p: replace_line(p / files.SAMPLES, 5, DEEP), "JSON nested too deeply to read"),
    "a deeply nested sweep index": (lambda p: whole(p.parent / files.SWEEP, DEEP), "JSON nested too deeply to read"),
    "a deeply nested header": (lambda p: whole(p / files.HEADER, DEEP), "JSON nested too deeply to read"),
    "a negative turn": (lambda p: edit_record(p, 3, turn=-1), "field 'turn' should be 0 or more, found -1"),
    "a negative sample index": (lambda p: edit_record(p, 3, sample_index=-2), "field 'sample_index' should be 0 or more, found -2"),
    "a session of no turns": (lambda p: edit_record(p, 3, session_turns=0), "field 'session_turns' should be 1 or more, found 0"),
    "a kept map with an empty layer": (lambda p: edit_record(p, 3, kept_map=[[0.5, 0.5], []]),
                                       "field 'kept_map' should be layers of equal, non-empty length"),
}


@pytest.mark.parametrize("damage", list(READ_DAMAGES))
def test_damage_is_one_line_in_every_reader(current_run, damage):  # noqa: F811
    from tui.session import load_sessions

    make, problem = READ_DAMAGES[damage]
    line = f"error: {make(current_run)}: {problem}\n"
    sweep = current_run.parent
    for args in (("report", str(sweep), "--no-plots"), ("rescore", str(sweep)), ("tui", str(sweep)),
                 ("compare", str(sweep), str(sweep))):
        done = cli(*args)
        assert (done.returncode, done.stderr) == (2, line), args
    with pytest.raises(RunFormatError) as raised:
        load_sessions(sweep)
    assert f"error: {raised.value}\n" == line


@pytest.mark.parametrize("text, problem", [
    (b"garbage\n", "line 1: not JSON (Expecting value at column 1)"),
    (b"[]\n", "line 1: expected a JSON object, found a list"),
    (b'{"id": "\xff"}\n', "line 1: not UTF-8 text (byte 0xff at offset 8)"),
])
def test_the_viewer_meets_a_damaged_contexts_file_before_it_opens(current_run, text, problem):  # noqa: F811
    path = current_run / files.CONTEXTS / "kv.jsonl"
    path.write_bytes(text)
    done = cli("tui", str(current_run.parent))  # before: the viewer opened and crashed on the first session
    assert (done.returncode, done.stderr) == (2, f"error: {path} {problem}\n")


# --- a resumed bench ----------------------------------------------------------------------------

@pytest.fixture
def sweep(tmp_path) -> Path:
    """A finished two-point sweep (full, snapkv) of 2 sessions x 3 turns each."""
    done = canned_sweep.run(tmp_path / "runs", methods="full,snapkv")
    assert done.returncode == 0, done.stderr
    return tmp_path / "runs" / "s"


BENCH_DAMAGES = {
    "non-UTF-8 bytes": (lambda s: replace_line(s / "snapkv" / files.SAMPLES, 2, b'{"task": "kv\xff"}'),
                        "not UTF-8 text (byte 0xff at offset 12)"),
    "a [] record": (lambda s: replace_line(s / "snapkv" / files.SAMPLES, 2, b"[]"), "expected a JSON object, found a list"),
    "a wrong-typed field": (lambda s: edit_record(s / "snapkv", 2, turn="one"), "field 'turn' should be an integer or null, found a string"),
    "a deeply nested record": (lambda s: replace_line(s / "snapkv" / files.SAMPLES, 2, DEEP), "JSON nested too deeply to read"),
    "a garbage header": (lambda s: whole(s / "snapkv" / files.HEADER, b"\x00garbage"), "not JSON (Expecting value at column 1)"),
    "a [] header": (lambda s: whole(s / "snapkv" / files.HEADER, b"[]"), "expected a JSON object, found a list"),
    "a garbage summary": (lambda s: whole(s / "snapkv" / files.SUMMARY, b"garbage"), "not JSON (Expecting value at column 1)"),
    "a garbage sweep index": (lambda s: whole(s / files.SWEEP, b"points: full"), "not JSON (Expecting value at column 1)"),
    "a [] sweep index": (lambda s: whole(s / files.SWEEP, b"[]"), "expected a JSON object, found a list"),
}


@pytest.mark.parametrize("damage", list(BENCH_DAMAGES))
def test_a_resumed_bench_names_a_damaged_file_before_it_runs_or_writes_anything(sweep, damage):
    make, problem = BENCH_DAMAGES[damage]
    (sweep / "full" / files.SAMPLES).unlink()  # the first point must run again...
    where = make(sweep)
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file() and p.name != files.LOCK}
    done = canned_sweep.run(sweep.parent, methods="full,snapkv")
    assert (done.returncode, done.stderr) == (2, f"error: {where}: {problem}\n")
    after = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file() and p.name != files.LOCK}
    assert after == before  # ...but not before the second point's damage is found: nothing ran, nothing changed


def test_a_resumed_bench_drops_a_torn_last_line_inside_a_multibyte_character(sweep):
    path = sweep / "full" / files.SAMPLES
    whole_file = path.read_bytes()
    torn = json.dumps({**json.loads(whole_file.splitlines()[0]), "prediction": "茶馆"}, ensure_ascii=False).encode()
    path.write_bytes(whole_file + torn[: torn.index("茶".encode()) + 1])
    done = canned_sweep.run(sweep.parent, methods="full,snapkv")
    assert done.returncode == 0, done.stderr
    assert "full: finished earlier" in done.stdout
    assert path.read_bytes() == whole_file


# --- defect 4: a sweep never mixes arguments ----------------------------------------------------

def test_reusing_a_name_with_another_seed_is_refused_before_anything_is_written(sweep):
    before = (sweep / files.SWEEP).read_bytes()
    done = canned_sweep.run(sweep.parent, methods="full,snapkv", seed=1)
    assert done.returncode == 2
    assert done.stderr == (f"error: {sweep} holds a sweep of other arguments (--seed 0 there, 1 here); run the "
                           "same command to resume it, or choose another --name or --out\n")
    assert (sweep / files.SWEEP).read_bytes() == before  # before: overwritten with seed 1


def test_reusing_a_name_with_another_method_and_seed_runs_nothing(sweep):
    done = canned_sweep.run(sweep.parent, methods="kivi", seed=1)
    assert done.returncode == 2
    assert "(--seed 0 there, 1 here; --methods/--budgets (points) full,snapkv there, kivi here)" in done.stderr
    assert not (sweep / "kivi").exists()  # before: it ran, and the report mixed seed 1 with seed 0
    assert json.loads((sweep / files.SWEEP).read_text())["points"] == ["full", "snapkv"]


def test_bench_cli_refuses_a_name_of_other_arguments_before_a_server_starts(sweep):
    before = (sweep / files.SWEEP).read_bytes()
    done = cli("bench", "--out", str(sweep.parent), "--name", "s", "--tasks", "kv", "--modes", "multi-turn",
               "--data", "fixtures", "--samples", "2", "--methods", "full,snapkv", "--seed", "1", timeout=300)
    assert done.returncode == 2, done.stderr
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: {sweep} holds a sweep of other arguments (") and "--seed 0 there, 1 here" in error
    assert "Traceback" not in done.stderr and (sweep / files.SWEEP).read_bytes() == before
    assert not list(sweep.rglob(files.SERVER_LOG))  # no server was started


def test_the_same_arguments_resume_the_sweep(sweep):
    done = canned_sweep.run(sweep.parent, methods="full,snapkv")
    assert done.returncode == 0, done.stderr
    assert "full: finished earlier" in done.stdout and "snapkv: finished earlier" in done.stdout


# --- defect 7: a finished point re-checks its records -------------------------------------------

def sessions(point: Path) -> list[tuple[int, int]]:
    return sorted((r["sample_index"], r["turn"]) for r in map(json.loads, (point / files.SAMPLES).read_text().splitlines()))


def test_an_emptied_samples_file_runs_the_point_again(sweep):
    point = sweep / "full"
    full = sessions(point)
    (point / files.SAMPLES).write_text("")
    done = canned_sweep.run(sweep.parent, methods="full,snapkv")
    assert done.returncode == 0, done.stderr
    assert "full: marked finished, but 2 of its 2 sessions are missing or incomplete in samples.jsonl" in done.stdout
    assert sessions(point) == full == [(i, t) for i in range(2) for t in range(3)]
    assert "snapkv: finished earlier" in done.stdout


def test_a_truncated_samples_file_runs_only_the_lost_sessions(sweep):
    point = sweep / "full"
    path = point / files.SAMPLES
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:4]))  # session 0 and a third of session 1
    done = canned_sweep.run(sweep.parent, methods="full,snapkv")
    assert done.returncode == 0, done.stderr
    assert "1 of its 2 sessions are missing or incomplete" in done.stdout
    assert "[1/1] full/kv/multi-turn/1" in done.stdout  # session 0 was kept, not run again
    assert sessions(point) == [(i, t) for i in range(2) for t in range(3)]
    assert json.loads((point / files.HEADER).read_text())["finished"]


def test_a_deleted_summary_is_rebuilt_without_running_anything(sweep):
    point = sweep / "snapkv"
    old = json.loads((point / files.SUMMARY).read_text())
    (point / files.SUMMARY).unlink()
    samples = (point / files.SAMPLES).read_bytes()
    done = canned_sweep.run(sweep.parent, methods="full,snapkv")
    assert done.returncode == 0, done.stderr
    assert "snapkv: summary.json was missing; rebuilt from samples.jsonl" in done.stdout
    assert "snapkv/kv" not in done.stdout  # no session ran
    assert json.loads((point / files.SUMMARY).read_text()) == {**old, "wall_seconds": None}
    assert (point / files.SAMPLES).read_bytes() == samples


def test_a_finished_point_without_its_contexts_runs_again(sweep):
    point = sweep / "full"
    (point / files.CONTEXTS / "kv.jsonl").unlink()
    done = canned_sweep.run(sweep.parent, methods="full,snapkv")
    assert done.returncode == 0, done.stderr
    assert "full: marked finished, but its contexts/kv.jsonl is missing; running what is missing" in done.stdout
    assert (point / files.CONTEXTS / "kv.jsonl").is_file() and len(sessions(point)) == 6

"""The run record's one owner, `results/`: reading reports without the runtime, points that never
pool different settings, the format-1 runs of before (migrated), and damaged files as one line.

Sweeps are written by the real sweep code (`bench.sweep.run_sweep`: header, sweep index, records,
summary, official export) with the SGLang program and the server connection replaced by canned
ones, so no server starts.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from errors import UsageError
from results import files
from results.checks import RunFormatError
from results.reader import load_run, load_runs
from results.records import FORMAT_VERSION
from tests.conftest import REPO
from tests.test_cli import cli

RUN_V1 = REPO / "tests" / "data" / "run_v1"  # a real `cli.py bench --samples 1 --turns 2` run, format 1


# --- sweeps written by the sweep code, without a server --------------------------------------------

class CannedProgram:
    """Stands in for a task's SGLang program: every asked turn answered right (the gold) or wrong."""

    def __init__(self, right: bool):
        self.right = right

    def run(self, *, sample, max_turns, **_):
        results = [
            {"turn": i, "prediction": turn.answer if self.right else "no idea", "prompt_tokens": 1000,
             "cached_tokens": 0 if i == 0 else 990, "completion_tokens": 5, "latency": 0.01, "finish_reason": "stop",
             "request_id": None}
            for i, turn in enumerate(sample.turns[:max_turns])
        ]
        return SimpleNamespace(error=lambda: None, ret_value=results)


def fake_connect(url: str, chat_template: bool = True):
    backend = SimpleNamespace(flush_cache=lambda: None, for_session=lambda namespace: None)
    tokenizer = SimpleNamespace(encode=lambda text, **_: text.split())
    return SimpleNamespace(url=url, backend=backend, tokenizer=tokenizer, chat_format=None, chat=False,
                           model_path="/models/tiny")


def run_sweep(out: Path, monkeypatch, methods: tuple[str, ...], method_args: tuple[str, ...] = (),
              budgets: tuple[int, ...] = (), right: bool = True) -> Path:
    """A sweep of the kv fixtures (2 sessions, multi-turn) as `cli.py bench --methods ... --method-arg
    ... --budgets ...` writes it; returns its directory."""
    import programs
    import runtime.backend
    from bench.display import PlainDisplay
    from bench.runner import BenchSpec
    from bench.sweep import Servers, plan_points, run_sweep as sweep, sweep_dir_for
    from data.loader import FIXTURES
    from kvmethods.registry import parse_methods

    monkeypatch.setattr(programs, "get_program", lambda name, mode: CannedProgram(right))
    monkeypatch.setattr(runtime.backend, "connect", fake_connect)
    points = plan_points(parse_methods(methods, method_args), budgets)
    spec = BenchSpec(tasks=("kv",), modes=("multi-turn",), data=FIXTURES, num_samples=2, chat_template=False)
    servers = Servers(model="tiny", endpoints=["http://127.0.0.1:9"])
    sweep_dir = sweep_dir_for(out, None, spec, points, servers)
    header = {"argv": ["cli.py", "bench"], "versions": {}, "sweep_dir": str(sweep_dir), "request_timeout": None}
    sweep(spec, points, servers, sweep_dir, PlainDisplay(io.StringIO()), header)
    return sweep_dir


def report_json(*paths: Path) -> dict:
    done = cli("report", *map(str, paths), "--json", "--no-plots")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def rows(report: dict) -> dict[str, float]:
    """The category table's rows of the one mode: point name -> Avg score."""
    return {r["label"]: r["avg"] for r in report["categories"]}


# --- report imports nothing heavy ----------------------------------------------------------------

def test_report_on_a_sweep_imports_neither_sglang_torch_transformers_nor_the_tasks(tmp_path, monkeypatch):
    sweep = run_sweep(tmp_path / "runs", monkeypatch, ("full", "snapkv"), budgets=(256, 512))
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['cli.py', 'report', {str(sweep)!r}, '--out', {str(tmp_path / 'figures')!r}]\n"
        "try:\n    runpy.run_path('cli.py', run_name='__main__')\n"
        "except SystemExit as done:\n    assert not done.code, done.code\n"
        "heavy = [m for m in ('torch', 'sglang', 'transformers', 'programs.registry', 'kvmethods') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "SCBench by category, multi-turn" in done.stdout and "snapkv-b512" in done.stdout
    assert (tmp_path / "figures" / "score_vs_budget.png").is_file()  # matplotlib is allowed, inside the plots
    assert "HEAVY []" in done.stdout


# --- a point's identity: label + method settings + budget ----------------------------------------

def test_method_arg_budgets_in_two_sweeps_are_two_rows(tmp_path, monkeypatch):
    low = run_sweep(tmp_path / "runs", monkeypatch, ("snapkv",), ("budget=256",), right=False)
    high = run_sweep(tmp_path / "runs", monkeypatch, ("snapkv",), ("budget=512",), right=True)
    assert low != high and (low / "snapkv").is_dir() and (high / "snapkv").is_dir()  # both points are "snapkv"
    (record,) = {(r.point, r.budget, r.method_settings["budget"]) for r in load_run(low / "snapkv").records}
    assert record == ("snapkv", 256, 256)  # the effective budget, not None
    assert json.loads((low / "snapkv" / files.HEADER).read_text())["budget"] == 256
    report = report_json(low, high)
    assert rows(report) == {"snapkv (budget=256)": 0.0, "snapkv (budget=512)": 1.0}
    assert [m["budget"] for m in report["methods"]] == [256, 512]
    assert report["notes"] == []  # nothing pooled


def test_budget_sweep_points_are_two_rows(tmp_path, monkeypatch):
    sweep = run_sweep(tmp_path / "runs", monkeypatch, ("snapkv",), budgets=(256, 512))
    report = report_json(sweep)
    assert list(rows(report)) == ["snapkv-b256", "snapkv-b512"]
    assert [(m["point"], m["budget"]) for m in report["methods"]] == [("snapkv-b256", 256), ("snapkv-b512", 512)]


def test_same_label_and_budget_with_another_setting_are_two_rows(tmp_path, monkeypatch):
    narrow = run_sweep(tmp_path / "runs", monkeypatch, ("snapkv",), ("budget=512", "window=16"), right=False)
    wide = run_sweep(tmp_path / "runs", monkeypatch, ("snapkv",), ("budget=512",), right=True)
    assert rows(report_json(narrow, wide)) == {"snapkv (window=16)": 0.0, "snapkv (window=32)": 1.0}


def test_the_same_point_named_twice_pools_once_and_says_so(tmp_path, monkeypatch):
    sweep = run_sweep(tmp_path / "runs", monkeypatch, ("snapkv",), ("budget=512",))
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    report = report_json(sweep, copy)
    assert list(rows(report)) == ["snapkv"]
    assert report["task_scores"][0]["records"] == 2 * len(load_run(sweep / "snapkv").records)
    assert report["notes"] == [f"snapkv kv multi-turn: records of 2 runs are pooled (copy/snapkv, {sweep.name}/snapkv)"]


def test_format_1_method_arg_budgets_no_longer_pool(tmp_path):
    """Before, `--method-arg budget=N` was recorded as budget None: two such points were averaged."""
    runs = []
    for budget, score in ((256, 0.0), (512, 1.0)):
        point = tmp_path / f"sweep-{budget}" / "snapkv"
        shutil.copytree(RUN_V1 / "full", point)
        header = json.loads((point / files.HEADER).read_text())
        header.update(method={"method": "snapkv", "budget": budget, "window": 32}, method_label="snapkv")
        (point / files.HEADER).write_text(json.dumps(header))
        lines = [json.loads(line) for line in (point / files.SAMPLES).read_text().splitlines()]
        lines = [{**r, "point": "snapkv", "method": "snapkv", "budget": None, "score": score} for r in lines]
        (point / files.SAMPLES).write_text("".join(json.dumps(r) + "\n" for r in lines))
        runs.append(point.parent)
    assert rows(report_json(*runs)) == {"snapkv (budget=256)": 0.0, "snapkv (budget=512)": 1.0}


# --- format 1 (today's runs before this version) --------------------------------------------------

@pytest.fixture
def run_v1(tmp_path) -> Path:
    copy = tmp_path / "kv-c4eaf0f2"
    shutil.copytree(RUN_V1, copy)
    return copy


def test_format_1_run_opens_in_report(run_v1):
    assert "format_version" not in (run_v1 / "full" / files.SAMPLES).read_text()
    report = report_json(run_v1)
    assert report["modes"] == ["multi-turn", "multi-request"] and list(rows(report)) == ["full"]
    assert [m["budget"] for m in report["methods"]] == [None]  # full has no budget
    (run,) = load_runs([run_v1])
    assert run.older_records and run.header.format_version == FORMAT_VERSION and run.header.finished
    first = run.records[0]
    assert (first.format_version, first.category, first.point, first.method) == (2, "String Retrieval", "full", "full")
    assert first.method_settings == {"method": "full", "budget": 4096} and first.budget is None
    assert first.request_id and first.session_turns == 2 and first.turn_extras == {"depth": 0.25}
    assert (run_v1 / "full" / files.SAMPLES).read_text().count("format_version") == 0  # reading changes nothing


def test_format_1_run_opens_in_the_step_through_viewer(run_v1):
    from tui.session import Navigator, load_sessions

    sessions = load_sessions(run_v1)
    assert [(s.method, s.mode, len(s.turns)) for s in sessions] == [("full", "multi-turn", 2), ("full", "multi-request", 2)]
    assert sessions[0].context and "eb1167b3-67a9-4378-bc65-c1e582e2e662" in sessions[0].context
    assert sessions[0].turns[1].gold == "fcbd04c3-4021-4ef7-8ca5-a5a19e4d6e3c"
    Navigator(sessions).start_at(method="full", mode="multi-request")


def test_format_1_point_resumes_and_is_rewritten_in_the_current_format(run_v1):
    from bench.resume import prepare_resume

    point = run_v1 / "full"
    assert prepare_resume(point) == {("kv", "multi-turn", 0), ("kv", "multi-request", 0)}
    lines = [json.loads(line) for line in (point / files.SAMPLES).read_text().splitlines()]
    assert len(lines) == 4 and {r["format_version"] for r in lines} == {FORMAT_VERSION}
    assert {r["category"] for r in lines} == {"String Retrieval"}
    assert load_run(point).records == load_runs([RUN_V1])[0].records  # the same records, now stored as read


@pytest.mark.parametrize("where, version, message", [
    ("header", 3, "run format version 3 is newer than this program reads (versions 1 to 2); "
                  "read it with a newer version of the project"),
    ("sweep", 7, "run format version 7 is newer than this program reads (versions 1 to 2); "
                 "read it with a newer version of the project"),
    ("record", 9, "run format version 9 is newer than this program reads (versions 1 to 2); "
                  "read it with a newer version of the project"),
    ("header", "two", "format_version 'two' is not a run format this program knows (it reads versions 1 to 2)"),
])
def test_an_unknown_format_is_one_line_naming_it(run_v1, where, version, message):
    if where == "record":
        path = run_v1 / "full" / files.SAMPLES
        lines = path.read_text().splitlines()
        lines[1] = json.dumps({**json.loads(lines[1]), "format_version": version})
        path.write_text("\n".join(lines) + "\n")
        named = f"{path} line 2"
    else:
        path = run_v1 / ("full/header.json" if where == "header" else "sweep.json")
        path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": version}))
        named = str(path)
    for command in ("report", "tui"):
        done = cli(command, str(run_v1))
        assert done.returncode == 2 and done.stderr == f"error: {named}: {message}\n"


# --- damaged files: one line naming the file, exit 2 ---------------------------------------------

def _samples_line(point: Path, number: int, text: bytes) -> str:
    path = point / files.SAMPLES
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = text
    path.write_bytes(b"\n".join(lines))
    return f"{path} line {number}"


def _typed_line(point: Path, field: str, value) -> str:
    line = json.loads((point / files.SAMPLES).read_text().splitlines()[2])
    return _samples_line(point, 3, json.dumps({**line, field: value}).encode())


def _whole(point: Path, name: str, text: bytes) -> str:
    path = (point if name == files.HEADER else point.parent) / name
    path.write_bytes(text)
    return str(path)


DAMAGES = {
    "non-UTF-8 bytes": (lambda p: _samples_line(p, 2, b'{"task": "kv\xff\xfe"}'), "not UTF-8 text (byte 0xff at offset 12)"),
    "a line that is not an object": (lambda p: _samples_line(p, 2, b"[]"), "expected a JSON object, found a list"),
    "a line that is not JSON": (lambda p: _samples_line(p, 1, b'{"task": "kv",'), "not JSON (Expecting property name enclosed in double quotes at column 15)"),
    "a wrong-typed field": (lambda p: _typed_line(p, "turn", "zero"), "field 'turn' should be an integer or null, found a string"),
    "a wrong-typed nested field": (lambda p: _typed_line(p, "kept_map", [[0.5, "x"]]), "field 'kept_map' should be a list of lists of numbers or null, found a list"),
    "an unknown field": (lambda p: _typed_line(p, "colour", "red"), "unknown field 'colour'"),
    "a garbage header": (lambda p: _whole(p, files.HEADER, b"\x00garbage"), "not JSON (Expecting value at column 1)"),
    "a [] header": (lambda p: _whole(p, files.HEADER, b"[]"), "expected a JSON object, found a list"),
    "an empty header": (lambda p: _whole(p, files.HEADER, b""), "empty file, expected a JSON object"),
    "a garbage sweep index": (lambda p: _whole(p, files.SWEEP, b"points: full"), "not JSON (Expecting value at column 1)"),
    "a [] sweep index": (lambda p: _whole(p, files.SWEEP, b"[]"), "expected a JSON object, found a list"),
    "a sweep index with wrong points": (lambda p: _whole(p, files.SWEEP, b'{"points": "full"}'), "field 'points' should be a list of strings, found a string"),
}


@pytest.fixture
def current_run(run_v1) -> Path:
    """The format-1 run, rewritten in the current format (as resuming it does); returns its point."""
    from bench.resume import prepare_resume

    point = run_v1 / "full"
    prepare_resume(point)
    files.write_json_atomic(point / files.HEADER, load_run(point).header.to_dict())
    return point


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_file_is_one_line_and_exit_2(current_run, damage):
    from bench.resume import prepare_resume
    from tui.session import load_sessions

    make, problem = DAMAGES[damage]
    where = make(current_run)
    line = f"error: {where}: {problem}\n"
    sweep = current_run.parent
    for args in (("report", str(sweep)), ("rescore", str(sweep)), ("tui", str(sweep)), ("compare", str(sweep), str(sweep))):
        done = cli(*args)
        assert (done.returncode, done.stderr) == (2, line), args
    with pytest.raises(UsageError) as raised:
        load_sessions(sweep)
    assert f"error: {raised.value}\n" == line
    if "sweep index" not in damage:  # resuming reads the point alone
        with pytest.raises(RunFormatError) as raised:
            prepare_resume(current_run)
        assert f"error: {raised.value}\n" == line
    if "header" in damage:  # so does the sweep's check that a point folder is its own
        from bench.runner import BenchSpec
        from bench.sweep import check_point_dir, plan_points
        from kvmethods.registry import parse_methods

        with pytest.raises(RunFormatError) as raised:
            check_point_dir(current_run, BenchSpec(), plan_points(parse_methods(("full",), ()), ())[0])
        assert f"error: {raised.value}\n" == line


def test_a_torn_last_line_inside_a_multibyte_character_is_dropped(current_run):
    from bench.resume import prepare_resume

    path = current_run / files.SAMPLES
    whole = path.read_bytes()
    torn = json.dumps({**json.loads(whole.splitlines()[0]), "prediction": "茶馆"}, ensure_ascii=False).encode()
    cut = torn.index("茶".encode()) + 1  # inside the character's three bytes
    path.write_bytes(whole + torn[:cut])
    run = load_run(current_run)
    assert len(run.records) == 4 and run.unterminated
    assert cli("report", str(current_run), "--no-plots").returncode == 0
    assert prepare_resume(current_run) == {("kv", "multi-turn", 0), ("kv", "multi-request", 0)}
    assert path.read_bytes() == whole  # rewritten without the torn line


def test_a_whole_last_line_without_its_newline_is_kept(current_run):
    path = current_run / files.SAMPLES
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    run = load_run(current_run)
    assert len(run.records) == 4 and run.unterminated


def test_records_round_trip_and_keep_their_field_order(current_run):
    from results.records import TurnRecord

    (line,) = (current_run / files.SAMPLES).read_text().splitlines()[:1]
    record = TurnRecord.from_dict(json.loads(line), "here")
    assert json.dumps(record.to_dict(), ensure_ascii=False) == line  # written back exactly as read
    assert list(record.to_dict())[:4] == ["task", "mode", "sample_id", "sample_index"]
    with pytest.raises(RunFormatError, match="^here: a record needs a 'turn' or an 'error'$"):
        TurnRecord.from_dict({**json.loads(line), "turn": None}, "here")
    with pytest.raises(RunFormatError, match="^here: missing field 'point'$"):
        TurnRecord.from_dict({k: v for k, v in json.loads(line).items() if k != "point"}, "here")

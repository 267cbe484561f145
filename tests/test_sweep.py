"""Sweeps without a server: points, sweep directories, resuming, the session scheduler."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.resume import finished_records, prepare_resume
from bench.runner import BenchSpec
from bench.scheduler import EndpointPool, run_sessions
from bench.sweep import Servers, check_point_dir, plan_points, sweep_dir_for
from errors import RuntimeFailure, UsageError
from kvmethods.registry import parse_methods
from results import files
from results.reader import load_run
from results.records import TurnRecord


def test_points_cross_methods_with_budgets_once_for_budgetless_methods():
    methods = parse_methods(("full", "snapkv", "kivi"), ())
    assert [p.label for p in plan_points(methods, ())] == ["full", "snapkv", "kivi"]
    points = plan_points(methods, (256, 512))
    assert [p.label for p in points] == ["full", "snapkv-b256", "snapkv-b512", "kivi"]  # full, kivi: no budget
    assert [p.method.budget for p in points[1:3]] == [256, 512] and points[1].budget == 256
    assert points[-1].budget is None
    with pytest.raises(UsageError, match=r"--budgets 16: snapkv: budget \(16\) must exceed window \(32\)"):
        plan_points(parse_methods(("snapkv",), ()), (16,))


def test_sweep_directory_names_follow_the_arguments(tmp_path):
    spec = BenchSpec(tasks=("kv",))
    points = plan_points(parse_methods(("snapkv",), ()), ())
    servers = Servers(model="m")
    first = sweep_dir_for(tmp_path, None, spec, points, servers)
    assert first == sweep_dir_for(tmp_path, None, spec, points, servers)  # a rerun finds it
    assert first.name.startswith("kv-")
    other = sweep_dir_for(tmp_path, None, BenchSpec(tasks=("kv",), num_samples=5), points, servers)
    assert other != first
    assert sweep_dir_for(tmp_path, "mine", spec, points, servers) == tmp_path / "mine"
    with pytest.raises(UsageError, match="plain folder name"):
        sweep_dir_for(tmp_path, "a/b", spec, points, servers)


def test_a_point_directory_is_never_reused_for_other_arguments(tmp_path):
    (point,) = plan_points(parse_methods(("snapkv",), ()), ())
    spec = BenchSpec()
    assert check_point_dir(tmp_path, spec, point) is None
    from dataclasses import asdict

    # A header of the format before versions (1) is read through the migration.
    files.write_json_atomic(tmp_path / "header.json", {"spec": asdict(spec), "method": point.method.to_dict()})
    assert check_point_dir(tmp_path, spec, point).method["method"] == "snapkv"
    with pytest.raises(UsageError, match="holds a run with other arguments"):
        check_point_dir(tmp_path, BenchSpec(num_samples=9), point)


def rec(index: int, turn: int | None, turns: int | None = 2, mode: str = "multi-turn", **extra) -> TurnRecord:
    return TurnRecord(task="kv", mode=mode, sample_id=f"kv-{index}", sample_index=index, category="String Retrieval",
                      point="full", method="full", method_settings={"method": "full"}, budget=None, turn=turn,
                      session_turns=turns, **{"score": 1.0, **extra})


def test_resume_keeps_finished_sessions_and_drops_partial_failed_and_torn(tmp_path):
    path = tmp_path / "samples.jsonl"
    done = [rec(0, 0), rec(0, 1), rec(0, 0, mode="multi-request"), rec(0, 1, mode="multi-request")]
    partial = [rec(1, 0)]  # killed before its second record
    failed = [rec(2, None, turns=1, score=None, error="boom")]
    files.write_jsonl_atomic(path, [r.to_dict() for r in done + partial + failed])
    with path.open("a") as fh:
        fh.write('{"task": "kv", "mode": "multi-turn", "sample_in')  # torn by kill -9
    assert prepare_resume(tmp_path) == {("kv", "multi-turn", 0), ("kv", "multi-request", 0)}
    assert load_run(tmp_path).records == done
    assert path.read_text().endswith("\n")
    before = path.stat().st_mtime_ns
    assert len(prepare_resume(tmp_path)) == 2 and path.stat().st_mtime_ns == before  # clean: untouched
    assert prepare_resume(tmp_path / "none") == set()
    assert finished_records([rec(0, 0, turns=None)]) == {}  # records from before resumable runs


@dataclass
class FakeConn:
    url: str


@dataclass
class Outcome:
    error: str | None
    where: str = ""


def test_sessions_on_a_dead_server_are_retried_on_another():
    down = {"http://a"}
    messages = []
    pool = EndpointPool([FakeConn("http://a"), FakeConn("http://b")], on_drop=messages.append,
                        healthy=lambda url: url not in down)
    seen = []
    lock = threading.Lock()

    def run_one(conn, item):
        with lock:
            seen.append((item, conn.url))
        return Outcome("connection refused" if conn.url in down else None, conn.url)

    results = list(run_sessions(range(6), run_one, pool, parallel=3))
    assert sorted(item for item, _, _ in results) == list(range(6))
    assert all(outcome.error is None and conn.url == "http://b" for _, outcome, conn in results)
    assert any(url == "http://a" for _, url in seen)  # it was tried, then dropped
    assert pool.dead == {"http://a": "connection refused"} and len(messages) == 1


def test_a_failure_on_a_live_server_is_the_sessions_own_and_no_server_left_stops_the_run():
    pool = EndpointPool([FakeConn("http://a")], healthy=lambda url: True)
    ((_, outcome, _),) = list(run_sessions([0], lambda c, i: Outcome("rejected: too long"), pool))
    assert outcome.error == "rejected: too long"  # recorded as a failed session, not retried
    dead = EndpointPool([FakeConn("http://a")], healthy=lambda url: False)
    with pytest.raises(RuntimeFailure, match="no SGLang server left"):
        list(run_sessions([0, 1], lambda c, i: Outcome("refused"), dead))


def test_parallel_sessions_really_overlap():
    pool = EndpointPool([FakeConn("http://a")], healthy=lambda url: True)
    barrier = threading.Barrier(3, timeout=10)

    def run_one(conn, item):
        barrier.wait()  # only returns when three sessions are in flight together
        return Outcome(None)

    assert len(list(run_sessions(range(3), run_one, pool, parallel=3))) == 3

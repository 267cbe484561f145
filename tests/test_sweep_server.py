"""Sweeps against real SGLang servers on the tiny model: a sweep killed with SIGKILL resumes to
the same result as an uninterrupted one, and sessions spread over two servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.test_cli import REPO, cli, point_dirs

pytestmark = pytest.mark.server


def bench_args(model, out) -> list[str]:
    return ["bench", "--model", str(model), "--samples", "3", "--turns", "2", "--context-tokens", "500",
            "--methods", "snapkv", "--method-arg", "budget=128", "--out", str(out)]


def session_results(out) -> dict:
    (point,) = point_dirs(out)
    records = [json.loads(l) for l in (point / "samples.jsonl").read_text().splitlines()]
    return {(r["task"], r["mode"], r["sample_index"], r["turn"]): (r["prediction"], r["score"], r["kept_kv"]) for r in records}


def count_sessions(path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"turn": 1' in line)


def test_a_killed_sweep_resumes_to_the_uninterrupted_result(tiny_model_path, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = cli(*bench_args(tiny_model_path, whole))
    assert done.returncode == 0, done.stderr[-2000:]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "cli.py", *bench_args(tiny_model_path, killed)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    samples = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(killed.glob("*/snapkv/samples.jsonl"))
        if found and count_sessions(found[0]) >= 2:
            samples = found[0]
            break
        time.sleep(0.1)
    assert samples is not None, "the sweep never got two sessions in"
    os.killpg(proc.pid, signal.SIGKILL)  # the bench process, mid-run, without any cleanup
    proc.wait(timeout=30)
    header = json.loads((samples.parent / "header.json").read_text())
    assert header["finished"] is False
    port = int(header["server"]["command"][header["server"]["command"].index("--port") + 1])
    for _ in range(100):  # the server follows its parent within seconds
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.2)
    else:
        pytest.fail("the managed server outlived the killed bench")
    partial = session_results(killed)
    assert 0 < len(partial) < len(session_results(whole))

    again = cli(*bench_args(tiny_model_path, killed))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "sessions already finished" in again.stderr
    assert session_results(killed) == session_results(whole)
    (point,) = point_dirs(killed)
    assert json.loads((point / "header.json").read_text())["finished"]
    third = cli(*bench_args(tiny_model_path, killed))  # a finished sweep starts no server
    assert third.returncode == 0 and "finished earlier" in third.stderr and "starting SGLang" not in third.stderr


def test_sessions_spread_over_two_servers(tiny_model_path, sglang_server, tmp_path):
    from runtime.server import ManagedServer, ServerOptions

    options = ServerOptions(model_path=str(tiny_model_path), device="cpu", max_total_tokens=8192)
    with ManagedServer(options, tmp_path / "second.log", tmp_path / "cache") as second:
        done = cli("bench", "--endpoint", sglang_server.url, "--endpoint", second.url, "--parallel", "2",
                   "--samples", "3", "--turns", "2", "--context-tokens", "400", "--out", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr[-2000:]
    (point,) = point_dirs(tmp_path / "runs")
    records = [json.loads(l) for l in (point / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 3 * 2 and not [r for r in records if r.get("error")]
    assert {r["endpoint"] for r in records} == {sglang_server.url, second.url}
    for r in records:  # each session ran on one server and reused its own context there
        if r["mode"] == "multi-request" or r["turn"] > 0:
            assert r["cached_tokens"] >= r["context_tokens"]

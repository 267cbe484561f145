"""The CLI as a user runs it: help, bad input, and the bench end to end on a real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from kvmethods import method_names
from programs.registry import task_names
from tests.conftest import REPO


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SCBENCH_DEBUG", None)
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def test_help_imports_neither_torch_nor_sglang():
    code = (
        "import sys; sys.argv = ['cli.py', '--help']\n"
        "import runpy\n"
        "try:\n    runpy.run_path('cli.py', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'sglang', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "bench" in done.stdout
    assert "HEAVY []" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "kvv"], "error: unknown task 'kvv'. Did you mean 'kv'? Valid: " + ", ".join(task_names())),
        (["--modes", "multi"], "error: unknown mode 'multi'. Did you mean 'multi-turn'? Valid: multi-turn, multi-request"),
        (["--history", "silver"], "error: unknown history 'silver'. Valid: gold, model"),
        (["--device", "tpu"], "error: unknown device 'tpu'. Valid: cpu, cuda"),
        (["--model", "./no/such/model"], "error: --model ./no/such/model: no such path"),
        (["--methods", "snap"], "error: Unknown method 'snap'. Did you mean 'snapkv'? Available: " + ", ".join(method_names())),
        (["--methods", "snapkv", "--method-arg", "budgte=64"], "error: Method 'snapkv' has no field 'budgte'. Did you mean 'budget'? Fields: budget, heads, window, kernel_size, pooling"),
        (["--methods", "snapkv,quest", "--endpoint", "http://127.0.0.1:9"], "error: with --endpoint the server's own attention runs: give at most one method (its label) and no --method-arg; to compare methods, let bench start one server per method (omit --endpoint)"),
    ],
)
def test_bad_values_give_one_line_and_exit_code_2(tmp_path, args, message):
    done = cli("bench", "--out", str(tmp_path), *args)
    assert done.returncode == 2
    assert done.stderr.strip() == message
    assert "Traceback" not in done.stderr


def test_unreachable_endpoint_is_one_line_exit_1(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = cli("bench", "--out", str(tmp_path), "--endpoint", f"http://127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"error: no healthy SGLang server at http://127.0.0.1:{port} (GET /health failed)"


def point_dirs(out_dir):
    """The point directories of the one sweep under `out_dir`, in sweep order."""
    (sweep,) = [p for p in out_dir.iterdir() if p.is_dir()]
    return [sweep / label for label in json.loads((sweep / "sweep.json").read_text())["points"]]


def read_run(out_dir):
    (run_dir,) = point_dirs(out_dir)
    header = json.loads((run_dir / "header.json").read_text())
    records = [json.loads(l) for l in (run_dir / "samples.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    return run_dir, header, records, summary


@pytest.mark.server
def test_bench_on_an_existing_endpoint(tmp_path, sglang_server):
    done = cli("bench", "--endpoint", sglang_server.url, "--samples", "2", "--turns", "3", "--context-tokens", "800", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "SCBench results" in done.stdout and "multi-request" in done.stdout
    run_dir, header, records, summary = read_run(tmp_path)
    assert header["server"] == {"endpoints": [sglang_server.url]}
    assert header["spec"]["tasks"] == ["kv"] and header["versions"]["sglang"] == "0.5.23"
    assert len(records) == 2 * 2 * 3  # modes x sessions x turns
    for rec in records:
        if rec["mode"] == "multi-request" or rec["turn"] > 0:
            assert rec["cached_tokens"] >= rec["context_tokens"]
        assert {"prediction", "gold", "score", "prompt_tokens", "completion_tokens", "latency"} <= rec.keys()
    by_mode = {r["mode"]: r for r in summary["results"]}
    assert set(by_mode) == {"multi-turn", "multi-request"}
    assert [t["turn"] for t in by_mode["multi-turn"]["turns"]] == [0, 1, 2]
    assert all(t["reuse"] > 0.8 for res in summary["results"] for t in res["turns"] if res["mode"] == "multi-request" or t["turn"] > 0)


@pytest.mark.server
def test_bench_with_a_managed_server_shuts_it_down(tmp_path, tiny_model_path):
    done = cli("bench", "--model", str(tiny_model_path), "--methods", "full", "--samples", "1", "--turns", "2",
               "--context-tokens", "500", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    run_dir, header, records, _ = read_run(tmp_path)
    assert header["server"]["managed"] and header["server"]["command"][header["server"]["command"].index("--host") + 1] == "127.0.0.1"
    assert len(records) == 2 * 1 * 2
    # Every turn's gold answer was teacher-forced through the session's cached KV.
    assert all(r["gold_nll"] > 0 and 0 <= r["gold_token_acc"] <= 1 and r["gold_tokens"] > 0 for r in records)
    port = int(header["server"]["command"][header["server"]["command"].index("--port") + 1])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the managed server outlived the command"
    assert (run_dir / "server.log").exists() and run_dir.name == "full" and header["finished"]


def test_the_default_bench_compares_full_with_two_methods_at_a_quarter_of_the_context():
    from commands.bench import default_methods

    assert default_methods(None, "", 2000, None, []) == (("full", "snapkv", "streamingllm"), ("500",))
    assert default_methods(None, "256,512", 2000, None, []) == (("full", "snapkv", "streamingllm"), ("256", "512"))
    assert default_methods("snapkv", "", 2000, None, []) == (("snapkv",), ())  # given methods run their defaults
    assert default_methods(None, "", 2000, "hub", []) == (("full",), ())  # real data: no budget to guess
    assert default_methods(None, "", 2000, None, ["http://127.0.0.1:1"]) == (("full",), ())  # the server's own attention

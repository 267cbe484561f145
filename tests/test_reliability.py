"""Reliability: bad input fails at once and leaves nothing behind; a prompt longer than the served
context fails its own session only; faults (the server killed mid-sweep, a server that stops
answering, a full disk) stop the run with one line and keep every finished session; the same sweep
gives the same numbers twice; and nothing the run takes in is trusted (server on loopback only, no
remote code, dataset text never executed).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import types
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO, same_reuse
from tests.test_cli import cli, point_dirs

GOOD_ROW = {"id": "ok", "context": "key 1 value 2. key 3 value 4.",
            "multi_turns": [{"input": "key 1?", "answer": "2"}, {"input": "key 3?", "answer": "4"}]}


def jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def leftovers(folder: Path) -> list[str]:
    """Everything under `folder` (which may not exist)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def read_records(path: Path) -> list[dict]:
    """Every line of a JSONL file, each of which must be whole, valid JSON."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"{path} ends in a torn line"
    return [json.loads(line) for line in text.splitlines()]


def session_keys(records) -> set[tuple]:
    return {(r["task"], r["mode"], r["sample_index"]) for r in records}


def stop_bench(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after "pid (comm)": state, ppid, pgrp
            pids.append(int(stat.parent.name))
    return pids


def server_pgid_on_port(port: int) -> int:
    """The process group of the SGLang launcher serving `port` (the bench's managed server)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "sglang.launch_server" in argv and "--port" in argv and argv[argv.index("--port") + 1] == str(port):
            return os.getpgid(int(cmdline.parent.name))
    raise AssertionError(f"no SGLang launcher serving port {port}")


def port_closed(port: int, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.2)
    return False


def wait_for_sessions(samples_glob, out: Path, proc: subprocess.Popen, sessions: int, timeout: float = 240) -> Path:
    """Waits until the running bench has appended `sessions` finished sessions; returns samples.jsonl."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for path in out.glob(samples_glob):
            lines = [l for l in path.read_text().splitlines() if l.endswith("}")]
            if len({(r["mode"], r["sample_index"]) for r in map(json.loads, lines)}) >= sessions:
                return path
        time.sleep(0.05)
    stop_bench(proc)
    raise AssertionError(f"the bench never wrote {sessions} sessions (exit {proc.returncode}): {proc.stderr.read()[-2000:]}")


def bench_popen(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SCBENCH_DEBUG", None)
    return subprocess.Popen([sys.executable, "cli.py", *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


# --- 1. Bad input: one line, exit 2 (1 for an unreachable server), nothing created -----------------

def _bad_cases(tmp: Path, model: Path) -> dict[str, tuple[list[str], int, str]]:
    """name -> (argv, exit code, how stderr starts)."""
    notrun = tmp / "not-a-run"
    notrun.mkdir()
    (notrun / "notes.txt").write_text("just a folder\n")
    data = {
        "missing": tmp / "no-such.jsonl",
        "not_json": tmp / "prose.json",
        "not_jsonl": tmp / "prose.jsonl",
        "all_malformed": jsonl(tmp / "all-bad.jsonl", [
            '{"id": 0, "context": "abc",',
            {"id": "nocontext", "multi_turns": [{"input": "q", "answer": "a"}]},
            {"id": "noturns", "context": "c", "multi_turns": []},
        ]),
        "parquet": tmp / "corrupt.parquet",
        "csv": tmp / "rows.csv",
    }
    data["not_json"].write_text("These are notes, not rows.\nSecond line.\n")
    data["not_jsonl"].write_text("These are notes, not rows.\n")
    data["parquet"].write_bytes(os.urandom(300))
    data["csv"].write_text("id,context\n0,abc\n")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]

    def bench(*args):
        return ["bench", "--model", str(model), *args]

    return {
        "unknown task": (bench("--tasks", "kv,nope"), 2, "error: unknown task 'nope'. Valid: kv, "),
        "unknown mode": (bench("--modes", "multi-turn,single"), 2, "error: unknown mode 'single'. Valid: multi-turn, multi-request"),
        "unknown method": (bench("--methods", "full,snapkvv"), 2, "error: Unknown method 'snapkvv'. Did you mean 'snapkv'?"),
        "unknown method field": (bench("--methods", "snapkv", "--method-arg", "window_size=8"), 2, "error: Method 'snapkv' has no field 'window_size'."),
        "method arg not field=value": (bench("--methods", "snapkv", "--method-arg", "budget"), 2, "error: --method-arg 'budget' must look like field=value"),
        "method arg not a number": (bench("--methods", "snapkv", "--method-arg", "budget=lots"), 2, "error: snapkv.budget: expected int, got 'lots'"),
        "budget below the sinks": (bench("--methods", "streamingllm", "--method-arg", "budget=64"), 2, "error: streamingllm: budget (64) must exceed sink (128)"),
        "budgets zero": (bench("--methods", "snapkv", "--budgets", "0"), 2, "error: --budgets 0: expected distinct budgets >= 1"),
        "budgets not numbers": (bench("--methods", "snapkv", "--budgets", "x"), 2, "error: --budgets x: expected comma-separated whole numbers"),
        "budget sweep below the window": (bench("--methods", "snapkv", "--budgets", "16"), 2, "error: --budgets 16: snapkv: budget (16) must exceed window (32)"),
        "missing model path": (["bench", "--model", str(tmp / "no-model")], 2, f"error: --model {tmp / 'no-model'}: no such path"),
        "model folder without config": (["bench", "--model", str(notrun)], 2, f"error: --model {notrun}: folder has no config.json"),
        "data missing": (bench("--data", str(data["missing"])), 2, f"error: --data {data['missing']}: no such file or folder"),
        "data .json not JSON": (bench("--data", str(data["not_json"])), 2, f"error: --data {data['not_json']}: no usable scbench_kv rows (2 malformed rows skipped; first: row 1: invalid JSON"),
        "data .jsonl not JSON": (bench("--data", str(data["not_jsonl"])), 2, f"error: --data {data['not_jsonl']}: no usable scbench_kv rows (1 malformed rows skipped; first: row 1: invalid JSON"),
        "data every row malformed": (bench("--data", str(data["all_malformed"])), 2, f"error: --data {data['all_malformed']}: no usable scbench_kv rows (3 malformed rows skipped; first: row 1: invalid JSON"),
        "data corrupt parquet": (bench("--data", str(data["parquet"])), 2, f"error: --data {data['parquet']}: cannot read it as parquet (Parquet magic bytes not found"),
        "data unsupported type": (bench("--data", str(data["csv"])), 2, f"error: --data {data['csv']}: unsupported file type"),
        "unreachable endpoint": (["bench", "--endpoint", f"http://127.0.0.1:{dead_port}"], 1, f"error: no healthy SGLang server at http://127.0.0.1:{dead_port} (GET /health failed)"),
        "report on a non-run folder": (["report", str(notrun)], 2, f"error: {notrun} is not a run directory"),
        "tui on a non-run folder": (["tui", str(notrun)], 2, f"error: {notrun} is not a run directory"),
        "rescore on a non-run folder": (["rescore", str(notrun)], 2, f"error: {notrun} is not a run directory"),
        "report on a missing folder": (["report", str(tmp / "gone")], 2, f"error: {tmp / 'gone'}: no such file or folder"),
    }


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, tiny_model_path):
    """Every bad-input command, run at once (three at a time): name -> (completed, out folder, case)."""
    tmp = tmp_path_factory.mktemp("bad-input")
    cases = _bad_cases(tmp, tiny_model_path)

    def run(name):
        argv, _, _ = cases[name]
        out = tmp / "out" / re.sub(r"\W+", "-", name)
        if argv[0] == "bench":
            argv = [*argv, "--out", str(out)]
        return name, (cli(*argv, timeout=120), out, cases[name])

    with ThreadPoolExecutor(3) as pool:
        return dict(pool.map(run, cases)), tmp


def _case_names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return list(_bad_cases(Path(tmp), Path(tmp)))


@pytest.mark.parametrize("name", _case_names())
def test_bad_input_is_one_line_and_leaves_nothing(bad_runs, name):
    runs, tmp = bad_runs
    done, out, (argv, code, message) = runs[name]
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert leftovers(out) == []
    assert leftovers(tmp / "not-a-run") == ["notes.txt"]  # report/tui/rescore wrote nothing into it


@pytest.mark.parametrize("option, value", [("--samples", "0"), ("--request-timeout", "0")])
def test_option_parse_errors_exit_2_and_create_nothing(tmp_path, option, value):
    # Typer/click print these (a usage line and a box), not one line; they still name the option.
    done = cli("bench", "--out", str(tmp_path / "out"), option, value, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"Invalid value for '{option}'" in done.stderr
    assert leftovers(tmp_path / "out") == []


def test_debug_switch_shows_the_traceback(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SCBENCH_DEBUG": "1"}
    done = subprocess.run([sys.executable, "cli.py", "bench", "--out", str(tmp_path), "--tasks", "nope"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0 and "Traceback" in done.stderr and "UsageError: unknown task 'nope'" in done.stderr


# --- A server with a small context (1,024 tokens), shared by the tests below -----------------------

@pytest.fixture(scope="module")
def short_server(tiny_model_path, tmp_path_factory):
    from runtime.server import ManagedServer, ServerOptions

    work = tmp_path_factory.mktemp("short-server")
    options = ServerOptions(model_path=str(tiny_model_path), device="cpu", max_total_tokens=8192, context_length=1024)
    with ManagedServer(options, work / "server.log", work / "cache") as server:
        yield server


def long_context(tokens_hint: int = 3000) -> str:
    rng = random.Random(7)
    return " ".join(f"{rng.getrandbits(48):x}" for _ in range(tokens_hint // 4))


# --- 2. A prompt longer than the served context, among malformed rows ------------------------------

@pytest.mark.server
def test_an_over_long_prompt_fails_its_session_only_and_is_retried(short_server, tiny_tokenizer, tmp_path):
    long = {"id": "long", "context": long_context(), "multi_turns": GOOD_ROW["multi_turns"]}
    assert len(tiny_tokenizer(long["context"])["input_ids"]) > 1024
    data = jsonl(tmp_path / "rows.jsonl", [
        {**GOOD_ROW, "id": "short"},
        long,
        '{"id": "broken", "context": ',
        {"id": "nocontext", "multi_turns": GOOD_ROW["multi_turns"]},
        {"id": "noturns", "context": "abc", "multi_turns": []},
        {**GOOD_ROW, "id": "short2"},
    ])
    # --max-seq-len 0: no middle cut, so the long prompt reaches the server whole in both modes.
    args = ["bench", "--endpoint", short_server.url, "--data", str(data), "--samples", "3", "--max-seq-len", "0",
            "--out", str(tmp_path / "out")]
    done = cli(*args, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # Malformed rows: reported one line each and skipped; the run goes on with the good ones.
    assert "skipped row 3: invalid JSON" in done.stderr
    assert "skipped row 4 (id nocontext): missing field 'context'" in done.stderr
    assert "skipped row 5 (id noturns): 'multi_turns' must be a non-empty list" in done.stderr
    assert "full: 2 sessions failed; run the same command again to retry them" in done.stderr
    assert "2, 1 failed" in done.stdout  # the table counts the failed session per mode

    (point,) = point_dirs(tmp_path / "out")
    first_lines = (point / "samples.jsonl").read_text().splitlines()
    records = read_records(point / "samples.jsonl")
    assert {r["sample_id"] for r in records} == {"short", "long", "short2"}
    failed = [r for r in records if r.get("error")]
    assert sorted(r["mode"] for r in failed) == ["multi-request", "multi-turn"]
    for r in failed:  # SGLang's own words (HTTP 400 from /generate) reach the record
        assert r["sample_id"] == "long"
        assert "is longer than the model's context length (1024 tokens)" in r["error"], r["error"]
    good = [r for r in records if not r.get("error")]
    assert len(good) == 2 * 2 * 2 and all(r["prediction"] is not None for r in good)
    assert json.loads((point / "header.json").read_text())["finished"] is False

    again = cli(*args, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "full: 4 sessions already finished; 2 to run" in again.stderr
    assert "full/kv/multi-turn/long failed" in again.stderr and "full/kv/multi-request/long failed" in again.stderr
    after = (point / "samples.jsonl").read_text().splitlines()
    assert [l for l in first_lines if not json.loads(l)["error"]] == after[:8]  # the finished sessions, untouched
    assert len(after) == 10 and all(json.loads(l).get("error") for l in after[8:])
    assert json.loads((point / "header.json").read_text())["finished"] is False


# --- 3b. A server that stops answering ---------------------------------------------------------------

@pytest.mark.server
def test_a_stopped_server_times_out_with_request_timeout(short_server, tmp_path):
    out = tmp_path / "out"
    proc = bench_popen("bench", "--endpoint", short_server.url, "--samples", "4", "--turns", "2",
                       "--context-tokens", "300", "--request-timeout", "4", "--out", str(out))
    pgid = short_server.process.pid  # started with setsid: the launcher leads the server's group
    stopped_at = None
    try:
        samples = wait_for_sessions("*/full/samples.jsonl", out, proc, sessions=1)
        os.killpg(pgid, signal.SIGSTOP)  # the server (launcher, scheduler, detokenizer) freezes
        stopped_at = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            stop_bench(proc)
            pytest.fail("bench kept waiting on a stopped server despite --request-timeout")
        waited = time.monotonic() - stopped_at
    finally:
        os.killpg(pgid, signal.SIGCONT)
        stop_bench(proc)
    assert proc.returncode == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: no SGLang server left to run on ({short_server.url}: ") and "timed out" in last, last
    assert waited < 60
    records = read_records(samples)
    assert records and not [r for r in records if r.get("error")]
    header = json.loads((samples.parent / "header.json").read_text())
    assert header["finished"] is False and header["request_timeout"] == 4
    from runtime.server import is_healthy

    deadline = time.monotonic() + 60
    while not is_healthy(short_server.url) and time.monotonic() < deadline:  # resumed, and serving again
        time.sleep(0.5)
    assert is_healthy(short_server.url)


# --- 3c. A full disk ----------------------------------------------------------------------------------

@pytest.mark.server
def test_a_full_disk_is_one_line_exit_1_and_keeps_what_was_written(short_server, tmp_path, monkeypatch, capsys):
    import typer

    from commands.bench import bench
    from results import files

    out = tmp_path / "out"
    real_append = files.append_jsonl_many
    appends = []

    def append_then_fill_the_disk(path, records):
        appends.append(path)
        if len(appends) >= 2:  # the second session's records find the disk full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_append(path, records)

    def dump_on_a_full_disk(obj, fh, **kwargs):
        if len(appends) >= 2:  # the summary written on the way out: half a file, then ENOSPC
            fh.write(json.dumps(obj)[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        json.dump(obj, fh, **kwargs)

    monkeypatch.setattr(files, "append_jsonl_many", append_then_fill_the_disk)
    monkeypatch.setattr(files, "json", types.SimpleNamespace(
        dump=dump_on_a_full_disk, dumps=json.dumps, loads=json.loads, JSONDecodeError=json.JSONDecodeError))
    monkeypatch.delenv("SCBENCH_DEBUG", raising=False)
    kwargs = dict(endpoint=[short_server.url], samples=2, turns=2, context_tokens=300, out=out)
    with pytest.raises(typer.Exit) as exit_info:
        bench(**kwargs)
    assert exit_info.value.exit_code == 1
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "error: OSError: [Errno 28] No space left on device"

    (point,) = point_dirs(out)
    records = read_records(point / "samples.jsonl")  # whole lines only, valid JSON
    assert len(session_keys(records)) == 1 and len(records) == 2
    assert json.loads((point / "header.json").read_text())["finished"] is False
    assert not (point / "summary.json").exists()  # never half-written: absent
    json.loads((out / point.parent.name / "sweep.json").read_text())
    for ctx in (point / "contexts").glob("*.jsonl"):
        read_records(ctx)
    assert list(out.rglob("*.tmp")) == [] and [p.name for p in out.rglob("*") if ".tmp" in p.name] == []

    monkeypatch.undo()  # space again: the same command finishes the run
    capsys.readouterr()
    bench(**kwargs)
    records = read_records(point / "samples.jsonl")
    assert len(session_keys(records)) == 4 and not [r for r in records if r.get("error")]
    assert json.loads((point / "header.json").read_text())["finished"] is True
    assert "1 sessions already finished; 3 to run" in capsys.readouterr().err


# --- 3a. The managed server killed mid-sweep ----------------------------------------------------------

@pytest.mark.server
def test_a_killed_server_stops_the_sweep_and_a_rerun_completes_it(tiny_model_path, tmp_path):
    out = tmp_path / "out"
    args = ["bench", "--model", str(tiny_model_path), "--methods", "full", "--samples", "4", "--turns", "2",
            "--context-tokens", "400", "--out", str(out)]
    proc = bench_popen(*args)
    try:
        samples = wait_for_sessions("*/full/samples.jsonl", out, proc, sessions=1)
        header = json.loads((samples.parent / "header.json").read_text())
        command = header["server"]["command"]
        port = int(command[command.index("--port") + 1])
        os.killpg(server_pgid_on_port(port), signal.SIGKILL)  # the server, not the bench
        _, stderr = proc.communicate(timeout=120)
    finally:
        stop_bench(proc)
    assert proc.returncode == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: no SGLang server left to run on (http://127.0.0.1:{port}: "), last
    assert port_closed(port)

    kept_lines = samples.read_text().splitlines()
    records = read_records(samples)
    assert 1 <= len(session_keys(records)) < 8 and not [r for r in records if r.get("error")]
    assert all(r["session_turns"] == 2 for r in records)
    assert len(records) == 2 * len(session_keys(records))  # whole sessions only
    assert json.loads((samples.parent / "header.json").read_text())["finished"] is False

    again = cli(*args, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"full: {len(session_keys(records))} sessions already finished; {8 - len(session_keys(records))} to run" in again.stderr
    final_lines = samples.read_text().splitlines()
    assert final_lines[: len(kept_lines)] == kept_lines
    final = read_records(samples)
    assert len(session_keys(final)) == 8 and len(final) == 16 and not [r for r in final if r.get("error")]
    assert json.loads((samples.parent / "header.json").read_text())["finished"] is True


# --- 4. Determinism -------------------------------------------------------------------------------------

@pytest.mark.server
def test_the_same_sweep_twice_gives_the_same_numbers(tiny_model_path, tmp_path):
    def run(out):
        done = cli("bench", "--model", str(tiny_model_path), "--samples", "1", "--turns", "2", "--context-tokens", "400",
                   "--methods", "snapkv", "--method-arg", "budget=128", "--out", str(out), timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        (point,) = point_dirs(out)
        return {(r["mode"], r["sample_index"], r["turn"]): r for r in read_records(point / "samples.jsonl")}

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert len(first) == 4 and first.keys() == second.keys()
    fields = ("prediction", "score", "score_fixed", "kept_kv", "kept_map", "prompt_tokens", "cached_tokens", "completion_tokens")
    for key in first:
        exact = [f for f in fields if f != "cached_tokens"]  # reuse may differ by the fork race only
        assert {f: first[key][f] for f in exact} == {f: second[key][f] for f in exact}, key
        a, b = first[key]["cached_tokens"], second[key]["cached_tokens"]
        assert same_reuse(key[0], a, b), (key, a, b)
    kept = [r["kept_kv"] for r in first.values()]
    assert all(k is not None for k in kept) and min(kept) < 0.9, kept  # the budget really dropped keys


# --- 5. Security --------------------------------------------------------------------------------------

def test_the_managed_server_command_binds_loopback_and_trusts_no_remote_code():
    from flashinfer_ext.server_settings import server_settings
    from kvmethods import get_method
    from runtime.server import ServerOptions

    for method in ("full", "snapkv", "kivi", "minference+snapkv"):
        settings = server_settings(get_method(method), "cpu", "/tmp/kept.jsonl")
        for device in ("cpu", "cuda"):
            cmd = ServerOptions(model_path="/m", device=device, attention_backend=settings.attention_backend,
                                extra_args=settings.extra_args, env=settings.env).command(30000)
            assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
            assert not [a for a in cmd if "trust" in a.lower() and "remote" in a.lower()], cmd
            assert "SGLANG_TRUST_REMOTE_CODE" not in settings.env


def _listening_sockets() -> dict[int, str]:
    """inode -> local address (hex, as in /proc/net/tcp*) of every listening TCP socket."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A":  # LISTEN
                found[int(cols[9])] = cols[1]
    return found


def _is_loopback(hex_address: str) -> bool:
    host = hex_address.split(":")[0]
    if len(host) == 8:  # IPv4, little-endian: 127.x.x.x ends in 7F
        return host.endswith("7F")
    return host in ("00000000000000000000000001000000",) or (host.startswith("0000000000000000FFFF0000") and host.endswith("7F"))


def _other_local_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _server_listeners(server) -> list[tuple[str, str]]:
    """(process name, local address) of every listening TCP socket of the server's process group."""
    listening = _listening_sockets()
    found = []
    for pid in group_pids(server.process.pid):
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in listening:
                found.append((comm, listening[int(target[8:-1])]))
    return found


def test_the_rendezvous_store_listens_on_loopback_only():
    # torch binds its TCPStore to every interface whatever host it is given; the plugin hands it a
    # socket bound to the loopback host instead. Run in a child so the patch stays out of this process.
    code = (
        "import datetime, importlib, os, json\n"
        "from runtime.loopback_store import install\n"
        "install(); install()\n"
        "rdzv = importlib.import_module('torch.distributed.rendezvous')\n"
        "store = rdzv._create_c10d_store('127.0.0.1', 0, 0, 1, datetime.timedelta(seconds=10))\n"
        "store.set('k', 'v'); assert store.get('k') == b'v'\n"
        "client = rdzv._create_c10d_store('127.0.0.1', store.port, 1, 2, datetime.timedelta(seconds=10))\n"
        "assert client.get('k') == b'v'\n"
        "fds = os.listdir('/proc/self/fd')  # one of them is the listing's own, gone by now\n"
        "socks = [os.readlink(f'/proc/self/fd/{fd}') for fd in fds if os.path.lexists(f'/proc/self/fd/{fd}')]\n"
        "print(json.dumps({'port': store.port, 'sockets': [int(s[8:-1]) for s in socks if s.startswith('socket:[')]}))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code + "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        info = json.loads(child.stdout.readline())
        listening = _listening_sockets()
        mine = [listening[inode] for inode in info["sockets"] if inode in listening]
        assert any(address.endswith(f":{info['port']:04X}") for address in mine), mine
        assert mine and all(_is_loopback(address) for address in mine), mine
    finally:
        child.communicate("", timeout=30)
    assert child.returncode == 0


def test_loopback_hosts():
    from runtime.loopback_store import is_loopback_host

    assert all(map(is_loopback_host, ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback_host, ["0.0.0.0", "10.0.0.5", "::", "node-1", ""]))


@pytest.mark.server
def test_the_http_port_listens_on_loopback_only(short_server):
    listeners = _server_listeners(short_server)
    port_hex = f"{short_server.port:04X}"
    http = [address for _, address in listeners if address.endswith(":" + port_hex)]
    assert http and all(_is_loopback(address) for address in http), listeners
    other = _other_local_address()
    if other is not None:
        with socket.socket() as sock:
            sock.settimeout(2)
            assert sock.connect_ex((other, short_server.port)) != 0, f"the server answers on {other}"


@pytest.mark.server
def test_no_server_socket_listens_beyond_loopback(short_server):
    # HTTP, ZMQ, gloo and the scheduler's torch.distributed store (runtime/loopback_store.py).
    listeners = _server_listeners(short_server)
    assert any(comm.startswith("sglang::sched") for comm, _ in listeners), listeners
    assert listeners and [l for l in listeners if not _is_loopback(l[1])] == [], listeners


def test_dataset_code_is_scored_never_run(tmp_path):
    from data.loader import load_samples
    from programs import get_task

    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    payload = f"open({str(marker)!r}, 'w').write('pwned')"
    function = (f"def leak(path={payload}):\n"
                f"    __import__('os').system('touch {marker}')\n"
                f"    return eval(\"{payload.replace(chr(34), '')}\")\n")
    context = f"# File: evil.py\n{payload}\nimport pickle\n\n\n{function}\n\ndef other():\n    return 1\n"
    row = {"id": "evil", "lang": "python", "repo": "evil/repo", "context": context, "multi_turns": [
        {"input": "Function description: writes a file.", "answer": function, "name": "leak"},
        {"input": "Function description: returns one.", "answer": "def other():\n    return 1\n", "name": "other"},
    ]}
    (sample,) = load_samples("scbench_repoqa", str(jsonl(tmp_path / "evil.jsonl", [row])))
    task = get_task("repoqa")
    prediction = f"Here it is:\n```python\n{payload}\n{function}```\n"
    scores = [task.score(prediction, sample.turns[0], sample, mode) for mode in ("official", "fixed")]
    wrong = task.score(prediction, sample.turns[1], sample, "official")
    assert scores == [1.0, 1.0] and wrong == 0.0  # parsed (tree-sitter) and matched, not executed
    mix = {**row, "id": "evil-mix", "multi_turns": [{**t, "task": "scbench_repoqa"} for t in row["multi_turns"]]}
    (mix_sample,) = load_samples("scbench_repoqa_and_kv", str(jsonl(tmp_path / "mix.jsonl", [mix])))
    assert get_task("repoqa_and_kv").score(prediction, mix_sample.turns[0], mix_sample, "official") == 1.0
    assert not marker.exists()


def test_no_dynamic_code_or_unsafe_deserialisation_on_data_paths():
    pattern = re.compile(
        r"(?<![\w.])(eval|exec)\s*\(|pickle\.loads?\(|import pickle|marshal\.loads?\(|yaml\.load\(|"
        r"torch\.load\(|trust_remote_code\s*=\s*True|--trust-remote-code"
    )
    hits = []
    scanned = 0
    for folder in ("data", "programs", "bench", "runtime", "commands", "tui"):
        for path in (REPO / folder).rglob("*.py"):
            scanned += 1
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
    assert scanned > 20
    assert hits == []
    assert pattern.search("x = eval(text)") and pattern.search("AutoModel.from_pretrained(p, trust_remote_code=True)")

"""One writer per sweep: a second bench on a sweep that another is writing is refused with one line
naming the holder (exit 2) and writes nothing; the lock dies with its holder (kill -9 included).

The benches run in processes of their own (`tests.canned_sweep`: the real sweep code, no server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from results import files
from tests import canned_sweep
from tests.conftest import REPO

HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from results.lock import sweep_lock\n"
    "with sweep_lock(Path(sys.argv[1]), 'bench'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)


def hold_lock(folder: Path) -> subprocess.Popen:
    """A process that holds `folder`'s lock until it is killed."""
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_a_second_bench_is_refused_in_one_line_naming_the_holder_and_writes_nothing(tmp_path):
    sweep = tmp_path / "runs" / "s"
    holder = hold_lock(sweep)
    try:
        done = canned_sweep.run(tmp_path / "runs")
        assert done.returncode == 2, done.stderr
        started = json.loads((sweep / files.LOCK).read_text())["started"]
        assert done.stderr == (f"error: {sweep} is being written by another process (pid {holder.pid} on "
                               f"{os.uname().nodename}, bench since {started}); wait for it to end, or choose "
                               "another --name or --out\n")
        assert sorted(p.name for p in sweep.iterdir()) == [files.LOCK]  # no sweep.json, no point
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # kill -9 released the lock: no stale lock to clean
    done = canned_sweep.run(tmp_path / "runs")
    assert done.returncode == 0, done.stderr
    assert lines(sweep / "full" / files.SAMPLES) == 6


def test_the_same_bench_twice_at_once_records_every_session_once(tmp_path):
    out = tmp_path / "runs"
    benches = [subprocess.Popen(canned_sweep.command(out, delay=5), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    ends = [bench.communicate(timeout=180) for bench in benches]
    codes = [bench.returncode for bench in benches]
    assert sorted(codes) == [0, 2], ends
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    refusal = ends[loser][1]
    assert refusal.count("\n") == 1 and f"is being written by another process (pid {benches[winner].pid} on " in refusal
    point = out / "s" / "full"
    assert lines(point / files.SAMPLES) == 6  # 2 sessions x 3 turns, once
    (official,) = (point / files.OFFICIAL).iterdir()
    assert lines(official) == 6
    (row,) = json.loads((point / files.SUMMARY).read_text())["results"]
    assert [turn["n"] for turn in row["turns"]] == [2, 2, 2]  # each turn of the two sessions once


def test_the_lock_is_free_once_a_bench_ends(tmp_path):
    assert canned_sweep.run(tmp_path / "runs").returncode == 0
    again = canned_sweep.run(tmp_path / "runs")
    assert again.returncode == 0, again.stderr
    assert "full: finished earlier" in again.stdout


def test_rescore_is_refused_while_a_bench_writes_the_sweep(tmp_path):
    assert canned_sweep.run(tmp_path / "runs").returncode == 0
    sweep = tmp_path / "runs" / "s"
    before = (sweep / "full" / files.SAMPLES).read_bytes()
    holder = hold_lock(sweep)
    try:
        for target in (sweep, sweep / "full"):  # the sweep, or a point inside it
            done = subprocess.run([sys.executable, "cli.py", "rescore", str(target)], cwd=REPO,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 2, done.stderr
            assert done.stderr.startswith(f"error: {sweep} is being written by another process (pid {holder.pid} ")
            assert (sweep / "full" / files.SAMPLES).read_bytes() == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    done = subprocess.run([sys.executable, "cli.py", "rescore", str(sweep)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "records rescored" in done.stdout, done.stderr

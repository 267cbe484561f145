"""A bench sweep without a server, in a process of its own: the real sweep code (`bench.sweep.run_sweep`:
lock, argument checks, header, records, summary, official export) with the SGLang program and the
server connection replaced by canned ones (`tests.test_results_package`), errors handled as the CLI
handles them (one line, exit 2 for bad input).

    python -m tests.canned_sweep OUT NAME METHODS SEED [SECONDS_PER_SESSION]

runs `cli.py bench --out OUT --name NAME --methods METHODS --seed SEED` on the kv fixtures (2
sessions of 3 turns, multi-turn), each session taking SECONDS_PER_SESSION.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO


def main(out: Path, name: str, methods: tuple[str, ...], seed: int, delay: float) -> None:
    import programs
    import runtime.backend
    from bench.display import PlainDisplay
    from bench.runner import BenchSpec
    from bench.sweep import Servers, plan_points, run_sweep, sweep_dir_for
    from commands.common import one_line_errors
    from data.loader import FIXTURES
    from kvmethods.registry import parse_methods
    from tests.test_results_package import CannedProgram, fake_connect

    class SlowProgram(CannedProgram):
        def run(self, **kwargs):
            time.sleep(delay)
            return super().run(**kwargs)

    programs.get_program = lambda task, mode: SlowProgram(True)
    runtime.backend.connect = fake_connect
    spec = BenchSpec(tasks=("kv",), modes=("multi-turn",), data=FIXTURES, num_samples=2, chat_template=False, seed=seed)
    servers = Servers(model="tiny", endpoints=["http://127.0.0.1:9"])
    with one_line_errors():
        points = plan_points(parse_methods(methods, ()), ())
        sweep_dir = sweep_dir_for(out, name, spec, points, servers)
        header = {"argv": ["cli.py", "bench"], "versions": {}, "sweep_dir": str(sweep_dir), "request_timeout": None}
        run_sweep(spec, points, servers, sweep_dir, PlainDisplay(sys.stdout), header)


def command(out: Path, name: str = "s", methods: str = "full", seed: int = 0, delay: float = 0.0) -> list[str]:
    return [sys.executable, "-m", "tests.canned_sweep", str(out), name, methods, str(seed), str(delay)]


def run(out: Path, name: str = "s", methods: str = "full", seed: int = 0, delay: float = 0.0) -> subprocess.CompletedProcess:
    return subprocess.run(command(out, name, methods, seed, delay), cwd=REPO, capture_output=True, text=True, timeout=180)


if __name__ == "__main__":
    import typer

    out, name, methods, seed, *rest = sys.argv[1:]
    try:
        main(Path(out), name, tuple(methods.split(",")), int(seed), float(rest[0]) if rest else 0.0)
    except typer.Exit as done:
        sys.exit(done.exit_code)

"""Sweeps: the cross product of KV methods and budgets, one self-describing directory per point.

    runs/<sweep>/sweep.json             the sweep's arguments and its points
    runs/<sweep>/<point>/               header.json, samples.jsonl, summary.json, contexts/, official/

A sweep's directory name comes from its arguments (or `--name`), so running the same command again
finds it: finished points are skipped (once their records are checked), unfinished ones resume where
they stopped (see `bench.resume`). A sweep or point directory is never reused for different
arguments, and only one process writes a sweep at a time (`results.lock`). Every existing file is
read, and the arguments compared, before anything is written or a server starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.display import Display
from bench.resume import keep_finished, unfinished_reason
from bench.runner import BenchSpec, PointRun, run_bench
from errors import UsageError
from results import files
from results.headers import PointHeader, SweepIndex
from results.identity import PointIdentity
from results.lock import sweep_lock
from results.reader import load_header, load_run, load_summary, load_sweep_index
from results.summary import summarize


@dataclass(frozen=True)
class Point:
    label: str
    method: Any  # a kvmethods method (or composition) instance
    budget: int | None  # the swept budget; None when budgets are not swept

    @property
    def effective_budget(self) -> int | None:
        """The budget the method runs with (swept or set by --method-arg); None when it has none."""
        return self.method.budget if self.method.uses_budget else None

    @property
    def identity(self) -> PointIdentity:
        return PointIdentity.make(self.label, self.method.to_dict(), self.effective_budget)


@dataclass
class Servers:
    """Where sessions run: existing endpoints, or one managed server per point."""

    model: str
    endpoints: list[str] = field(default_factory=list)
    device: str = "cpu"
    max_total_tokens: int = 32768
    chat_template: bool = True


def plan_points(methods: list, budgets: tuple[int, ...]) -> list[Point]:
    """One point per method, or per (method, budget) when budgets are swept; methods whose `budget`
    changes nothing (quantization) run once."""
    points = []
    for method in methods:
        if not budgets:
            points.append(Point(method.name, method, None))
        elif not method.uses_budget:
            points.append(Point(method.name, method, None))
        else:
            for budget in budgets:
                try:
                    points.append(Point(f"{method.name}-b{budget}", method.replace(budget=budget), budget))
                except ValueError as err:
                    raise UsageError(f"--budgets {budget}: {err}") from None
    return points


def sweep_dir_for(out: Path, name: str | None, spec: BenchSpec, points: list[Point], servers: Servers) -> Path:
    """`out/<name>`, or `out/<tasks>-<digest of the arguments>` so a rerun finds its sweep."""
    if name:
        if "/" in name or name in (".", ".."):
            raise UsageError(f"--name {name!r}: expected a plain folder name")
        return out / name
    what = {"spec": asdict(spec), "points": [p.method.to_dict() for p in points], "servers": asdict(servers)}
    digest = hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:8]
    tasks = "-".join(spec.tasks) if len(spec.tasks) <= 3 else f"{len(spec.tasks)}tasks"
    return out / f"{tasks}-{digest}"


def check_point_dir(point_dir: Path, spec: BenchSpec, point: Point) -> PointHeader | None:
    """The point's existing header (None when new); refuses a directory made by other arguments."""
    header = load_header(point_dir)  # older formats migrate; a damaged header is one line
    if header is None:
        return None
    if header.spec != json.loads(json.dumps(asdict(spec))) or header.method != point.method.to_dict():
        raise UsageError(
            f"{point_dir} holds a run with other arguments; choose another --name or --out to keep both"
        )
    return header


# The arguments a sweep's runs must share, by their field in sweep.json, as the options that set them.
SPEC_OPTIONS = {
    "tasks": "--tasks", "modes": "--modes", "num_samples": "--samples", "context_tokens": "--context-tokens",
    "num_turns": "--turns", "seed": "--seed", "data": "--data", "history": "--history", "max_turns": "--max-turns",
    "chat_template": "--chat-template", "flush_between_sessions": "flush between sessions",
    "max_seq_len": "--max-seq-len", "prompts": "--prompts", "gold_likelihood": "--gold-likelihood",
}
# Endpoints may change between runs (a server restarted on another port); what runs there may not.
SERVER_OPTIONS = {"model": "--model", "device": "--device", "max_total_tokens": "--max-total-tokens"}


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(none)"
    return "(unset)" if value is None else str(value)


def check_sweep_args(sweep_dir: Path, spec: BenchSpec, points: list[Point], servers: Servers) -> None:
    """Refuses a sweep directory whose sweep.json was written for other arguments, naming each one
    that differs: one sweep never mixes runs of different arguments."""
    index = load_sweep_index(sweep_dir)  # a damaged one is one line
    if index is None:
        return
    mine = json.loads(json.dumps({"spec": asdict(spec), "servers": asdict(servers)}))
    differ = []
    if index.spec is not None:
        for key, option in SPEC_OPTIONS.items():
            if index.spec.get(key) != mine["spec"].get(key):
                differ.append((option, index.spec.get(key), mine["spec"].get(key)))
    if index.servers is not None:
        for key, option in SERVER_OPTIONS.items():
            if index.servers.get(key) != mine["servers"].get(key):
                differ.append((option, index.servers.get(key), mine["servers"].get(key)))
    if index.points != [p.label for p in points]:
        differ.append(("--methods/--budgets (points)", index.points, [p.label for p in points]))
    if differ:
        what = "; ".join(f"{option} {_shown(there)} there, {_shown(here)} here" for option, there, here in differ)
        raise UsageError(f"{sweep_dir} holds a sweep of other arguments ({what}); run the same command to resume "
                         "it, or choose another --name or --out")


def point_state(point_dir: Path, spec: BenchSpec, point: Point) -> str | None:
    """Reads the point's files before anything runs (a damaged one is one line; another point's
    arguments are refused): None when it must run (new, unfinished, or sessions lost since it
    finished), else why it is done."""
    existing = check_point_dir(point_dir, spec, point)
    if existing is None:
        return None
    if not existing.finished:
        load_run(point_dir)  # damaged records stop the sweep before any server starts
        return None
    load_summary(point_dir)  # so does a damaged summary (a missing one is rebuilt)
    lost = unfinished_reason(point_dir, spec.tasks, spec.modes)
    return f"marked finished, but {lost}" if lost else "finished earlier"


def run_sweep(spec: BenchSpec, points: list[Point], servers: Servers, sweep_dir: Path, display: Display,
              base_header: dict[str, Any], parallel: int = 1) -> list[Path]:
    """Runs every unfinished point in turn, holding the sweep's lock (a second bench on the same
    sweep is refused); returns the point directories. Every file is checked before anything is written."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with sweep_lock(sweep_dir, "bench"):
        check_sweep_args(sweep_dir, spec, points, servers)
        states = [point_state(sweep_dir / point.label, spec, point) for point in points]
        index = SweepIndex(**base_header, spec=asdict(spec), points=[p.label for p in points],
                           servers=asdict(servers), parallel=parallel)
        files.write_json_atomic(sweep_dir / files.SWEEP, index.to_dict())
        for number, (point, state) in enumerate(zip(points, states), 1):
            display.message(f"point {number}/{len(points)}: {point.label}")
            point_dir = sweep_dir / point.label
            if state == "finished earlier":
                _tidy_finished(point_dir, display, point.label)
                display.message(f"{point.label}: finished earlier ({point_dir})")
                continue
            if state:
                display.message(f"{point.label}: {state}; running what is missing")
            _run_point(spec, point, servers, point_dir, display, base_header, parallel)
    return [sweep_dir / point.label for point in points]


def _tidy_finished(point_dir: Path, display: Display, label: str) -> None:
    """A finished point's samples.jsonl without stray records (a session recorded twice, a torn
    line), and its summary.json and official/ export rebuilt when missing or out of date."""
    from results.export import export_official

    _, rewritten = keep_finished(point_dir)
    if rewritten or not (point_dir / files.SUMMARY).is_file():
        old = load_summary(point_dir)
        summary = summarize(load_run(point_dir).records, old.wall_seconds if old else None)
        files.write_json_atomic(point_dir / files.SUMMARY, summary.to_dict())
        export_official(point_dir)
        display.message(f"{label}: {files.SAMPLES} tidied and {files.SUMMARY} rebuilt" if rewritten
                        else f"{label}: {files.SUMMARY} was missing; rebuilt from {files.SAMPLES}")


def _run_point(spec: BenchSpec, point: Point, servers: Servers, point_dir: Path, display: Display,
               base_header: dict[str, Any], parallel: int) -> None:
    from results.export import export_official

    point_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        conns, server_info, stats_path = _serve(stack, point, servers, point_dir, display)
        header = PointHeader(
            **base_header, method=point.method.to_dict(), method_label=point.label,
            budget=point.effective_budget, server=server_info, model_path=conns[0].model_path,
            chat_template=conns[0].chat, finished=False,
        )
        run = PointRun(point_dir, point.identity, stats_path, parallel)
        summary = run_bench(spec, conns, run, display, header)
    export_official(point_dir)
    failed = sum(r.failed_sessions for r in summary.results)
    header = load_header(point_dir).replace(finished=failed == 0)
    files.write_json_atomic(point_dir / files.HEADER, header.to_dict())
    if failed:
        display.message(f"{point.label}: {failed} sessions failed; run the same command again to retry them")


def _serve(stack, point: Point, servers: Servers, point_dir: Path, display: Display):
    """Connections for a point: the given endpoints, or a managed server started with the point's
    method (its lifetime tied to `stack`). Returns (conns, server info, kept-KV stats path)."""
    from runtime.backend import connect
    from runtime.method_server import serve_method

    if servers.endpoints:
        conns = [connect(url, chat_template=servers.chat_template) for url in servers.endpoints]
        return conns, {"endpoints": servers.endpoints}, None
    log_path = point_dir / files.SERVER_LOG
    display.message(f"{point.label}: starting SGLang server for {servers.model} (log: {log_path})")
    served = stack.enter_context(serve_method(
        point.method, model=servers.model, device=servers.device, max_total_tokens=servers.max_total_tokens,
        log_path=log_path, stats_path=(point_dir / files.KEPT_KV).resolve(),
    ))
    display.message(f"{point.label}: server ready at {served.url} in {served.startup_seconds:.1f}s")
    conn = connect(served.url, chat_template=servers.chat_template)
    return [conn], served.info(), served.stats_path

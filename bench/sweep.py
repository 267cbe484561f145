"""Sweeps: the cross product of KV methods and budgets, one self-describing directory per point.

    runs/<sweep>/sweep.json             the sweep's arguments and its points
    runs/<sweep>/<point>/               header.json, samples.jsonl, summary.json, contexts/, official/

A sweep's directory name comes from its arguments (or `--name`), so running the same command again
finds it: finished points are skipped, unfinished ones resume where they stopped (see
`bench.resume`). A point directory is never reused for different arguments.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.display import Display
from bench.runner import BenchSpec, PointRun, run_bench
from errors import UsageError
from results import files
from results.headers import PointHeader, SweepIndex
from results.identity import PointIdentity
from results.reader import load_header


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


def run_sweep(spec: BenchSpec, points: list[Point], servers: Servers, sweep_dir: Path, display: Display,
              base_header: dict[str, Any], parallel: int = 1) -> list[Path]:
    """Runs every unfinished point in turn; returns the point directories."""
    from results.export import export_official

    sweep_dir.mkdir(parents=True, exist_ok=True)
    index = SweepIndex(**base_header, spec=asdict(spec), points=[p.label for p in points], servers=asdict(servers),
                       parallel=parallel)
    files.write_json_atomic(sweep_dir / files.SWEEP, index.to_dict())
    dirs = []
    for number, point in enumerate(points, 1):
        display.message(f"point {number}/{len(points)}: {point.label}")
        point_dir = sweep_dir / point.label
        dirs.append(point_dir)
        existing = check_point_dir(point_dir, spec, point)
        if existing and existing.finished:
            display.message(f"{point.label}: finished earlier ({point_dir})")
            continue
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
    return dirs


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

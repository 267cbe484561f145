"""Reading finished (or unfinished) runs back from disk, and rescoring them.

A path is a run when it holds samples.jsonl (one sweep point, or an older single-directory run that
may mix methods); it is a sweep when its immediate subfolders are runs. Records are grouped by
(method, budget): `budget` is the swept budget (None when budgets were not swept), and records
without a method (the oldest runs) are full attention.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import rundir
from runtime.errors import UsageError

if TYPE_CHECKING:
    from programs.metrics import ScoringContext

SWEEP = "sweep.json"  # written by bench.sweep (not imported from there: it pulls in the runtime)

Key = tuple[str, "int | None"]


@dataclass
class Run:
    path: Path
    header: dict[str, Any]
    records: list[dict[str, Any]]


def key(record: dict[str, Any]) -> Key:
    return record.get("method") or "full", record.get("budget")


def label(k: Key) -> str:
    """The sweep point's name for a key: "snapkv", or "snapkv-b512" in budget sweeps."""
    method, budget = k
    return method if budget is None else f"{method}-b{budget}"


def _is_run(path: Path) -> bool:
    return (path / rundir.SAMPLES).is_file()


def run_dirs(path: Path) -> list[Path]:
    """The run directories a path names: itself, or its points (in sweep.json's order if present)."""
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if _is_run(path):
        return [path]
    subs = sorted(d for d in path.iterdir() if d.is_dir() and _is_run(d)) if path.is_dir() else []
    if not subs:
        raise UsageError(f"{path} is not a run directory: no samples.jsonl in it or its subfolders")
    sweep = path / SWEEP
    if sweep.is_file():
        order = {name: i for i, name in enumerate(json.loads(sweep.read_text()).get("points", []))}
        subs.sort(key=lambda d: order.get(d.name, len(order)))
    return subs


def load_run(path: Path) -> Run:
    header_path = path / rundir.HEADER
    header = json.loads(header_path.read_text()) if header_path.is_file() else {}
    return Run(path, header, rundir.read_jsonl(path / rundir.SAMPLES))


def load_runs(paths) -> list[Run]:
    """Every run under `paths`, each path once even when named twice."""
    dirs = dict.fromkeys(d.resolve() for p in paths for d in run_dirs(Path(p)))
    return [load_run(d) for d in dirs]


def all_records(paths) -> list[dict[str, Any]]:
    return [r for run in load_runs(paths) for r in run.records]


def pooled(runs: list[Run]) -> list[str]:
    """Notes for (method, task, mode) groups that several runs hold: the report pools their records."""
    where: dict[tuple, set[Path]] = defaultdict(set)
    for run in runs:
        for rec in run.records:
            where[(label(key(rec)), rec["task"], rec["mode"])].add(run.path)
    return [
        f"{name} {task} {mode}: records of {len(paths)} runs are pooled ({', '.join(sorted(p.name for p in paths))})"
        for (name, task, mode), paths in where.items() if len(paths) > 1
    ]


# --- rescoring -----------------------------------------------------------------------------------

SCORE_FIELDS = {"official": "score", "fixed": "score_fixed"}


def _contexts(run: Path, task: str) -> dict[str, Any] | None:
    """The run's samples of one task by id (None when the run did not save them)."""
    from data.sample import MalformedRow, sample_from_row

    path = run / rundir.CONTEXTS / f"{task}.jsonl"
    if not path.is_file():
        return None
    samples = {}
    for position, row in enumerate(rundir.read_jsonl(path)):
        try:
            sample = sample_from_row(row, fallback_id=position)
        except MalformedRow:
            continue
        samples[sample.id] = sample
    return samples


def _scoring_contexts(run: Run, samples: dict[str, dict[str, Any] | None]) -> dict[tuple, ScoringContext]:
    """The run each record was scored in, per (point, task, mode): the sessions that have records,
    in session order, each with the turns it asked (what the official export holds)."""
    from programs.metrics import ScoringContext

    sessions: dict[tuple, dict[tuple, tuple[Any, int]]] = defaultdict(dict)
    for rec in run.records:
        sample = None if rec.get("error") else (samples.get(rec["task"]) or {}).get(str(rec["sample_id"]))
        if sample is None:
            continue
        group = sessions[(key(rec), rec["task"], rec["mode"])]
        session = (rec.get("sample_index", 0), str(rec["sample_id"]))
        asked = group[session][1] if session in group else 0
        group[session] = (sample, max(asked, rec["turn"] + 1))
    return {
        group: ScoringContext.for_sessions(group[1], group[2], [found[i] for i in sorted(found)])
        for group, found in sessions.items()
    }


def rescore_run(run: Run, scorings: tuple[str, ...]) -> dict[str, Any]:
    """Recomputes the `scorings` fields of every scored record from its saved prediction, then
    rewrites samples.jsonl and summary.json (atomically). Returns counts and notes.

    Official RepoQA scores compare with the needles of every session of the same repo that has
    records (what the official export holds); see `programs.metrics.context`.
    Not for a run that bench is still writing: records appended meanwhile would be lost.
    """
    from bench.summary import summarize
    from programs.registry import get_task

    counts = {"records": 0, "changed": 0, **{s: 0 for s in scorings}}
    notes: list[str] = []
    cache: dict[str, dict | None] = {}
    for task in dict.fromkeys(rec["task"] for rec in run.records if not rec.get("error")):
        cache[task] = _contexts(run.path, task)
        if cache[task] is None:
            notes.append(f"{run.path}: no {rundir.CONTEXTS}/{task}.jsonl; its records keep their scores")
    contexts = _scoring_contexts(run, cache)
    for rec in run.records:
        if rec.get("error"):
            continue
        task = rec["task"]
        sample = (cache[task] or {}).get(str(rec["sample_id"]))
        if cache[task] is not None and (sample is None or rec["turn"] >= len(sample.turns)):
            notes.append(f"{run.path}: {task} sample {rec['sample_id']} (or its turn) is not in its contexts file; left as it was")
            continue
        if sample is None:
            continue
        counts["records"] += 1
        changed = False
        context = contexts[(key(rec), task, rec["mode"])]
        for scoring in scorings:
            field = SCORE_FIELDS[scoring]
            new = get_task(task).score(rec.get("prediction"), sample.turns[rec["turn"]], sample, scoring, context)
            old = rec.get(field)
            if old is None or abs(new - old) > 1e-9:
                rec[field] = new
                counts[scoring] += 1
                changed = True
        counts["changed"] += changed
    if counts["changed"]:
        rundir.write_jsonl_atomic(run.path / rundir.SAMPLES, run.records)
        summary_path = run.path / rundir.SUMMARY
        old = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        rundir.write_json_atomic(summary_path, {**old, **summarize(run.records)})  # keeps wall_seconds
    return {"run": str(run.path), **counts, "notes": list(dict.fromkeys(notes))}

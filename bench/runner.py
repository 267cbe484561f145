"""Running sessions: each sample of each task, in each mode, as one SGLang program run.

One record per session turn goes to samples.jsonl as soon as the session ends; a session that fails
(e.g. the server rejects a request) is recorded with its error and the run goes on.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import rundir
from bench.display import Display
from bench.summary import reuse, summarize
from data.sample import Sample
from programs.base import TaskSpec
from runtime.backend import Connection


@dataclass(frozen=True)
class BenchSpec:
    """Everything that decides what a bench run computes (recorded in header.json)."""

    tasks: tuple[str, ...] = ("kv",)
    modes: tuple[str, ...] = ("multi-turn", "multi-request")
    num_samples: int = 3
    context_tokens: int = 2000
    num_turns: int = 4
    seed: int = 0
    data: str | None = None  # None: the offline generator; else a local file/folder or "hub"
    history: str = "gold"
    max_turns: int | None = None
    chat_template: bool = True
    # Empty the radix cache before each session, so a session's reuse comes from itself alone (the
    # same sample in another mode would otherwise leave its prompts cached).
    flush_between_sessions: bool = True
    # SCBench's --max_seq_length: the first prompt is cut in the middle to fit (None: no cut).
    max_seq_len: int | None = None


@dataclass
class SessionOutcome:
    records: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def data_source(task: TaskSpec, spec: BenchSpec) -> str:
    """Where a task's samples come from: 'generator', 'fixtures', 'hub' or a path."""
    from data.generators import GENERATORS
    from data.loader import FIXTURES

    if spec.data is not None:
        return spec.data
    return "generator" if task.name in GENERATORS else FIXTURES


def load_task_samples(task: TaskSpec, spec: BenchSpec, count_tokens, on_skip) -> list[Sample]:
    from data.generators import GENERATORS
    from data.loader import load_samples

    source = data_source(task, spec)
    if source == "generator":
        return GENERATORS[task.name](
            count_tokens,
            num_samples=spec.num_samples,
            context_tokens=spec.context_tokens,
            num_turns=spec.num_turns,
            seed=spec.seed,
        )
    return load_samples(task.config, None if source == "hub" else source, limit=spec.num_samples, on_skip=on_skip)


def fit_to_max_seq_len(conn: Connection, task: TaskSpec, sample: Sample, mode: str, spec: BenchSpec, count_tokens) -> Sample:
    """The sample with its context cut in the middle so the first prompt fits `spec.max_seq_len`."""
    from dataclasses import replace

    from data.truncation import prompt_budget, truncate_sample

    turns = sample.turns[: spec.max_turns]
    budget = prompt_budget(spec.max_seq_len, task.max_new_tokens, len(turns), mode)
    empty = replace(sample, context="")
    outside_context = count_tokens(task.shared_prefix(empty) + task.separator + task.query(turns[0], first=mode == "multi-turn"))
    return truncate_sample(conn.tokenizer, sample, budget - outside_context)


def _scalars(mapping: dict[str, Any]) -> dict[str, Any]:
    """The small fields of a dict (what the official export and the TUI need), not whole documents."""
    return {k: v for k, v in mapping.items() if isinstance(v, (str, int, float, bool, list, dict)) and len(str(v)) <= 2000}


def run_session(conn: Connection, task: TaskSpec, sample: Sample, mode: str, spec: BenchSpec, count_tokens, index: int = 0) -> SessionOutcome:
    from programs import get_program

    base = {"task": task.name, "mode": mode, "sample_id": sample.id, "sample_index": index}
    if spec.max_seq_len:
        try:
            sample = fit_to_max_seq_len(conn, task, sample, mode, spec, count_tokens)
        except ValueError as err:
            return SessionOutcome([{**base, "error": f"ValueError: {err}"}], str(err), 0.0)
    program = get_program(task.name, mode)
    kwargs: dict[str, Any] = {"sample": sample, "chat": conn.chat, "max_turns": spec.max_turns}
    if mode == "multi-turn":
        kwargs["history"] = spec.history
    started = time.monotonic()
    try:
        if spec.flush_between_sessions:
            conn.backend.flush_cache()
        state = program.run(backend=conn.backend, **kwargs)
        failure = state.error() if hasattr(state, "error") else None
        results = state.ret_value
    except Exception as err:  # a request the server rejected, a dropped connection
        failure, results = err, None
    seconds = time.monotonic() - started
    if failure is not None or results is None:
        return SessionOutcome([{**base, "error": f"{type(failure).__name__}: {failure}"}], str(failure), seconds)

    context_tokens = count_tokens(sample.context)
    records = []
    for result in results:
        turn = sample.turns[result["turn"]]
        records.append({
            **base,
            **result,
            "question": turn.question,
            "gold": turn.answer,
            "score": task.score(result["prediction"], turn, sample, "official"),
            "score_fixed": task.score(result["prediction"], turn, sample, "fixed"),
            "context_tokens": context_tokens,
            "new_prefill_tokens": None if result["prompt_tokens"] is None else result["prompt_tokens"] - (result["cached_tokens"] or 0),
            "session_seconds": seconds,
            "turn_extras": _scalars(turn.extras),
            "sample_meta": _scalars(sample.metadata),
        })
    return SessionOutcome(records, None, seconds)


class KeptKVReader:
    """Joins the server's kept-KV lines (one per request, written by the `kvm` backend) to records."""

    def __init__(self, path: Path | None):
        self.path = path
        self.offset = 0
        self.by_rid: dict[str, float] = {}

    def annotate(self, records: list[dict[str, Any]]) -> None:
        if self.path is not None and self.path.exists():
            with self.path.open("r", encoding="utf-8") as fh:
                fh.seek(self.offset)
                for line in fh:
                    if not line.endswith("\n"):
                        break  # a line still being written: read it next time
                    self.offset += len(line.encode("utf-8"))
                    row = json.loads(line)
                    self.by_rid[row["rid"]] = row
        for record in records:
            row = self.by_rid.pop(record.get("request_id"), {})
            record["kept_kv"] = row.get("kept_kv")
            record["kept_map"] = row.get("kept_map")


@dataclass
class PointRun:
    """One sweep point: a KV method (maybe at a swept budget) on its servers, in its own directory."""

    run_dir: Path
    label: str  # the point's name: the method, plus "-b<budget>" in budget sweeps
    method: str = "full"
    budget: int | None = None
    stats_path: Path | None = None  # the kvm backend's kept-KV lines (managed servers only)
    parallel: int = 1


def plan_work(spec: BenchSpec, count_tokens, run_dir: Path, display: Display) -> list[tuple]:
    """(task, mode, sample, index) for every session of the spec, modes outermost; writes contexts/."""
    from programs import get_task

    def on_skip(ref: str, reason: str) -> None:
        display.message(f"skipped {ref}: {reason}")

    per_task = []
    for task_name in spec.tasks:
        task = get_task(task_name)
        if data_source(task, spec) == "fixtures" and spec.data is None:
            display.message(f"{task.name}: no offline generator; using the bundled fixtures (pass --data for real rows)")
        samples = load_task_samples(task, spec, count_tokens, on_skip)
        # The sessions' contexts and gold turns, in SCBench's row layout (for viewers and rescoring).
        (run_dir / rundir.CONTEXTS).mkdir(exist_ok=True)
        rundir.write_jsonl_atomic(run_dir / rundir.CONTEXTS / f"{task.name}.jsonl", [s.to_row() for s in samples])
        if not samples:
            display.message(f"{task.name}: no usable samples")
        per_task.append((task, samples))
    return [(task, mode, sample, index) for mode in spec.modes for task, samples in per_task for index, sample in enumerate(samples)]


def run_bench(
    spec: BenchSpec,
    conns: list[Connection],
    point: PointRun,
    display: Display,
    header: dict[str, Any],
) -> dict[str, Any]:
    """Runs the point's unfinished sessions over `conns`, appending each session's records as it
    ends; returns the summary of the point's directory.

    One session at a time on one server empties the radix cache before each session, so a session's
    reuse comes from itself alone. In parallel, the cache is emptied once per mode instead (sessions
    of one sample in two modes share a context and must not share its compressed KV).
    """
    from bench.resume import prepare_resume, session_key
    from bench.scheduler import EndpointPool, run_sessions
    from data.generators import token_counter

    # SGLang's frontend warns with a traceback when a request fails; the session records that error.
    warnings.filterwarnings("ignore", message="Error in stream_executor", category=UserWarning)
    run_dir = point.run_dir
    header = {**header, "spec": asdict(spec)}
    rundir.write_json_atomic(run_dir / rundir.HEADER, header)
    kept = KeptKVReader(point.stats_path)
    count_tokens = token_counter(conns[0].tokenizer)
    samples_path = run_dir / rundir.SAMPLES
    finished = prepare_resume(samples_path)
    work = [w for w in plan_work(spec, count_tokens, run_dir, display) if (w[0].name, w[1], w[3]) not in finished]
    if finished:
        display.message(f"{point.label}: {len(finished)} sessions already finished; {len(work)} to run")

    concurrent = point.parallel > 1 or len(conns) > 1
    session_spec = replace(spec, flush_between_sessions=spec.flush_between_sessions and not concurrent)
    pool = EndpointPool(conns, on_drop=display.message)

    def run_one(conn, item):
        task, mode, sample, index = item
        return run_session(conn, task, sample, mode, session_spec, count_tokens, index)

    display.start(len(work), f"{point.label}: {','.join(spec.tasks)}")
    started = time.monotonic()
    try:
        for mode in spec.modes:
            phase = [w for w in work if w[1] == mode]
            if concurrent and spec.flush_between_sessions and phase:
                for conn in pool.live():
                    conn.backend.flush_cache()
            for (task, mode_, sample, index), outcome, conn in run_sessions(phase, run_one, pool, point.parallel):
                _record_session(outcome, point, conn, kept, samples_path)
                _show(display, point, f"{task.name}/{mode_}/{sample.id}", outcome)
    finally:
        display.close()
        summary = summarize(rundir.read_jsonl(samples_path))
        summary["wall_seconds"] = round(time.monotonic() - started, 2)
        rundir.write_json_atomic(run_dir / rundir.SUMMARY, summary)
    return summary


def _record_session(outcome: SessionOutcome, point: PointRun, conn: Connection, kept: KeptKVReader, path: Path) -> None:
    kept.annotate(outcome.records)
    for record in outcome.records:
        record.update(
            point=point.label, method=point.method, budget=point.budget, endpoint=conn.url,
            session_turns=len(outcome.records),
        )
    rundir.append_jsonl_many(path, outcome.records)


def _show(display: Display, point: PointRun, label: str, outcome: SessionOutcome) -> None:
    if outcome.error:
        display.session_done(f"{point.label}/{label}", f"failed: {outcome.error}")
        return
    scores = " ".join(f"{100 * r['score']:.0f}" for r in outcome.records)
    reuses = " ".join(f"{reuse(r) or 0:.0%}" for r in outcome.records)
    kept_kv = [r["kept_kv"] for r in outcome.records if r.get("kept_kv") is not None]
    kept_text = f" kept {' '.join(f'{k:.0%}' for k in kept_kv)}" if kept_kv else ""
    display.session_done(f"{point.label}/{label}", f"scores {scores} reuse {reuses}{kept_text} {outcome.seconds:.1f}s")

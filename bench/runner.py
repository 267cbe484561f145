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
from bench.reuse_check import recomputed_tokens
from bench.summary import reuse, summarize
from data.sample import Sample
from programs.base import SENT, TaskSpec
from programs.metrics.context import ScoringContext
from runtime.backend import Connection
from runtime.isolation import session_namespace


@dataclass(frozen=True)
class BenchSpec:
    """Everything that decides what a bench run computes (recorded in header.json)."""

    tasks: tuple[str, ...] = ("kv",)
    modes: tuple[str, ...] = ("multi-turn", "multi-request")
    # Sessions per task; None: every row of real data (as SCBench's --num_eval_examples -1), and
    # GENERATED_SAMPLES from the offline generators.
    num_samples: int | None = None
    context_tokens: int = 2000
    num_turns: int = 4
    seed: int = 0
    data: str | None = None  # None: the offline generator; else a local file/folder or "hub"
    history: str = "gold"
    max_turns: int | None = 5  # SCBench's --max_turns (None: every turn)
    chat_template: bool = True
    # Empty the radix cache before each session, so a session's reuse comes from itself alone (the
    # same sample in another mode would otherwise leave its prompts cached).
    flush_between_sessions: bool = True
    # SCBench's --max_seq_length (default 131,072, capped to the model's context length): the first
    # prompt is cut in the middle to fit, as data.truncation says (None or 0: no cut).
    max_seq_len: int | None = 131_072
    # "official" (SCBench's prompts, quirks included) or "fixed" (programs.prompts.OFFICIAL_QUIRKS).
    prompts: str = "official"


GENERATED_SAMPLES = 3  # sessions per task from an offline generator when --samples is not given


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
            num_samples=GENERATED_SAMPLES if spec.num_samples is None else spec.num_samples,
            context_tokens=spec.context_tokens,
            num_turns=spec.num_turns,
            seed=spec.seed,
        )
    return load_samples(task.config, None if source == "hub" else source, limit=spec.num_samples, on_skip=on_skip)


def fit_to_max_seq_len(
    conn: Connection, task: TaskSpec, sample: Sample, mode: str, spec: BenchSpec, budget_turns: int | None = None
) -> tuple[Sample, str | None]:
    """The session's first prompt cut in the middle as SCBench's runner cuts it (`data.truncation`),
    or None when it fits; the cut is recorded in the sample's `metadata["truncation"]`.

    `budget_turns`: the turns the budget counts; the official runner counts the task's first row's
    (after --max-turns), `plan_budget_turns`. None: this sample's own.
    """
    from dataclasses import replace

    from data.truncation import effective_max_seq_len, fits_without_tokenizing, prompt_budget, truncate_prompt
    from programs.prompts import session_prompts

    max_seq_len = effective_max_seq_len(spec.max_seq_len, getattr(conn, "context_length", None))
    if max_seq_len is None:
        return sample, None
    turns = len(sample.turns[: spec.max_turns]) if budget_turns is None else budget_turns
    budget = prompt_budget(max_seq_len, task.max_new_tokens, turns, mode)
    first = session_prompts(task, sample, getattr(conn, "chat_format", None), spec.prompts, spec.max_turns).first(mode)
    if fits_without_tokenizing(first, budget):
        return sample, None
    cut = truncate_prompt(conn.tokenizer, first, budget)
    if not cut.cut:
        return sample, None
    return replace(sample, metadata={**sample.metadata, "truncation": cut.record(budget)}), cut.text


def plan_budget_turns(planned: list[tuple], max_turns: int | None) -> dict[str, int]:
    """Per task, the turns SCBench's truncation budget counts: its first row's, after --max-turns."""
    return {task.name: len(sample.turns[:max_turns]) for task, _, sample, index in planned if index == 0}


def _record_fields(mapping: dict[str, Any]) -> dict[str, Any]:
    """Every set field of a turn's extras or a sample's metadata, whatever its size: the official
    export rebuilds SCBench's `ground_truth` from them (e.g. long choice options)."""
    return {k: v for k, v in mapping.items() if v is not None}


def scoring_contexts(planned: list[tuple], max_turns: int | None) -> dict[tuple[str, str], ScoringContext]:
    """One scoring context per (task, mode) of the planned sessions `(task, mode, sample, index)`:
    the run the official scorer sees, every planned session with its asked turns."""
    sessions: dict[tuple[str, str], list[tuple[int, Sample]]] = {}
    for task, mode, sample, index in planned:
        sessions.setdefault((task.name, mode), []).append((index, sample))
    return {
        (task, mode): ScoringContext.for_run(task, mode, [s for _, s in sorted(items, key=lambda item: item[0])], max_turns)
        for (task, mode), items in sessions.items()
    }


def run_session(
    conn: Connection, task: TaskSpec, sample: Sample, mode: str, spec: BenchSpec, count_tokens, index: int = 0,
    scoring: ScoringContext | None = None, budget_turns: int | None = None,
) -> SessionOutcome:
    """`scoring`: the run around the session (`scoring_contexts`); None: the session is the run.
    `budget_turns`: see `fit_to_max_seq_len`."""
    from programs import get_program

    if scoring is None:
        scoring = ScoringContext.for_run(task.name, mode, [sample], spec.max_turns)
    base = {"task": task.name, "mode": mode, "sample_id": sample.id, "sample_index": index}
    try:
        sample, first_prompt = fit_to_max_seq_len(conn, task, sample, mode, spec, budget_turns)
    except ValueError as err:
        return SessionOutcome([{**base, "error": f"ValueError: {err}"}], str(err), 0.0)
    program = get_program(task.name, mode)
    kwargs: dict[str, Any] = {"sample": sample, "chat": getattr(conn, "chat_format", None) or False, "max_turns": spec.max_turns}
    if spec.prompts != "official":
        kwargs["prompts"] = spec.prompts
    if first_prompt is not None:
        kwargs["first_prompt"] = first_prompt
    if mode == "multi-turn":
        kwargs["history"] = spec.history
    started = time.monotonic()
    try:
        if spec.flush_between_sessions:
            conn.backend.flush_cache()
        # Its own radix namespace: a session sees exactly the cache it would see alone (runtime.isolation).
        backend = conn.backend.for_session(session_namespace(task.name, mode, index, sample.id))
        state = program.run(backend=backend, **kwargs)
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
        texts = result.pop(SENT, None)  # (held, sent); a program of another origin may not say
        result["recomputed_tokens"] = None if texts is None else recomputed_tokens(
            conn.tokenizer, *texts, result["cached_tokens"], getattr(conn, "page_size", 1))
        turn = sample.turns[result["turn"]]
        records.append({
            **base,
            **result,
            "question": turn.question,
            "gold": turn.answer,
            "score": task.score(result["prediction"], turn, sample, "official", scoring),
            "score_fixed": task.score(result["prediction"], turn, sample, "fixed", scoring),
            "context_tokens": context_tokens,
            "new_prefill_tokens": None if result["prompt_tokens"] is None else result["prompt_tokens"] - (result["cached_tokens"] or 0),
            "session_seconds": seconds,
            "turn_extras": _record_fields(turn.extras),
            "sample_meta": _record_fields(sample.metadata),
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
            record["kept_kv_heads"] = row.get("heads")  # what kept_kv averages over: "query" or "kv" heads
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

    Every session runs in its own radix-cache namespace (`runtime.isolation`), so its reuse comes
    from itself alone, whatever runs beside it. The cache is also emptied before each session (once
    per mode in parallel), which frees the KV pool for the sessions to come.
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
    planned = plan_work(spec, count_tokens, run_dir, display)
    budget_turns = plan_budget_turns(planned, spec.max_turns)
    _note_max_seq_len(spec, conns[0], display)
    scoring = scoring_contexts(planned, spec.max_turns)  # from every session, finished ones included
    work = [w for w in planned if (w[0].name, w[1], w[3]) not in finished]
    if finished:
        display.message(f"{point.label}: {len(finished)} sessions already finished; {len(work)} to run")

    concurrent = point.parallel > 1 or len(conns) > 1
    session_spec = replace(spec, flush_between_sessions=spec.flush_between_sessions and not concurrent)
    pool = EndpointPool(conns, on_drop=display.message)

    def run_one(conn, item):
        task, mode, sample, index = item
        return run_session(conn, task, sample, mode, session_spec, count_tokens, index, scoring[(task.name, mode)],
                           budget_turns.get(task.name))

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


def _note_max_seq_len(spec: BenchSpec, conn: Connection, display: Display) -> None:
    from data.truncation import effective_max_seq_len

    effective = effective_max_seq_len(spec.max_seq_len, getattr(conn, "context_length", None))
    if effective is not None and effective != spec.max_seq_len:
        display.message(f"--max-seq-len {spec.max_seq_len} is capped to the model's context length, {effective} tokens")


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
    recomputed = sum(r.get("recomputed_tokens") or 0 for r in outcome.records)
    evicted = f" (re-prefilled {recomputed} evicted context tokens)" if recomputed else ""
    display.session_done(f"{point.label}/{label}", f"scores {scores} reuse {reuses}{kept_text} {outcome.seconds:.1f}s{evicted}")

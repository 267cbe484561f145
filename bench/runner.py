"""Running sessions: each sample of each task, in each mode, as one SGLang program run.

One record per session turn (`results.records.TurnRecord`, made here and nowhere else) goes to
samples.jsonl as soon as the session ends; a session that fails (e.g. the server rejects a request)
is recorded with its error and the run goes on.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.display import Display
from bench.reuse_check import recomputed_tokens
from data.sample import Sample
from errors import UsageError
from programs.base import SENT
from programs.metrics.context import ScoringContext
from programs.spec import TaskSpec
from results import files
from results.headers import PointHeader
from results.identity import PointIdentity
from results.reader import load_run
from results.records import TurnRecord
from results.summary import Summary, summarize
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
    num_turns: int = 3
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
    # Measure each turn's gold answer likelihood through the turn's KV (programs.likelihood).
    gold_likelihood: bool = True


GENERATED_SAMPLES = 2  # sessions per task from an offline generator when --samples is not given


# The point of records made outside a sweep (a script running one session): SGLang's own attention.
UNNAMED_POINT = PointIdentity.make("full", {"method": "full"}, None)


@dataclass
class SessionOutcome:
    records: list[TurnRecord] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the session could not measure, and why
    # The session's input cannot run at these sizes (no room for the prompt, a prompt over the
    # server's limits): a rerun fails the same way.
    input_error: bool = False


# How SGLang words a request it rejects for its size (HTTP 400 from /generate): the input, not the
# server, is at fault.
INPUT_REJECTIONS = ("is longer than the model's context length", "exceeds the model's maximum context length",
                    "exceeds the maximum number of tokens")


def rejected_input(error: str) -> bool:
    return any(phrase in error for phrase in INPUT_REJECTIONS)


def data_source(task: TaskSpec, spec: BenchSpec) -> str:
    """Where a task's samples come from: 'generator', 'fixtures', 'hub' or a path."""
    from data.loader import FIXTURES

    if spec.data is not None:
        return spec.data
    return "generator" if task.generator is not None else FIXTURES


def load_task_samples(task: TaskSpec, spec: BenchSpec, count_tokens, on_skip) -> list[Sample]:
    from data.loader import load_samples

    source = data_source(task, spec)
    if source == "generator":
        return task.generator(
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
    scoring: ScoringContext | None = None, budget_turns: int | None = None, point: PointIdentity = UNNAMED_POINT,
) -> SessionOutcome:
    """`scoring`: the run around the session (`scoring_contexts`); None: the session is the run.
    `budget_turns`: see `fit_to_max_seq_len`. `point`: the sweep point the records belong to."""
    from programs import get_program

    if scoring is None:
        scoring = ScoringContext.for_run(task.name, mode, [sample], spec.max_turns)

    def record(**fields: Any) -> TurnRecord:
        """One of the session's records: the one place a TurnRecord is made."""
        return TurnRecord(
            task=task.name, mode=mode, sample_id=str(sample.id), sample_index=index, category=task.category,
            point=point.label, method=point.method, method_settings=point.settings, budget=point.budget,
            endpoint=getattr(conn, "url", None), **fields,
        )

    try:
        sample, first_prompt = fit_to_max_seq_len(conn, task, sample, mode, spec, budget_turns)
    except ValueError as err:
        return SessionOutcome([record(error=f"ValueError: {err}", session_turns=1, session_seconds=0.0)], str(err), 0.0,
                              input_error=True)
    program = get_program(task.name, mode)
    kwargs: dict[str, Any] = {"sample": sample, "chat": getattr(conn, "chat_format", None) or False, "max_turns": spec.max_turns}
    if spec.prompts != "official":
        kwargs["prompts"] = spec.prompts
    if first_prompt is not None:
        kwargs["first_prompt"] = first_prompt
    if mode == "multi-turn":
        kwargs["history"] = spec.history
    # Its own radix namespace: a session sees exactly the cache it would see alone (runtime.isolation).
    namespace = session_namespace(task.name, mode, index, sample.id)
    probe = _session_probe(conn, sample, spec, namespace)
    if probe is not None:
        kwargs["after_turn"] = probe
    scorer = _context_scorer(conn, sample, point, namespace)
    if scorer is not None:
        kwargs["score_context"] = scorer
    started = time.monotonic()
    try:
        if spec.flush_between_sessions:
            conn.backend.flush_cache()
        state = program.run(backend=conn.backend.for_session(namespace), **kwargs)
        failure = state.error() if hasattr(state, "error") else None
        results = state.ret_value
    except Exception as err:  # a request the server rejected, a dropped connection
        failure, results = err, None
    seconds = time.monotonic() - started - (probe.seconds if probe is not None else 0.0)
    if failure is not None or results is None:
        error = f"{type(failure).__name__}: {failure}"
        return SessionOutcome([record(error=error, session_turns=1, session_seconds=seconds)], str(failure), seconds,
                              input_error=rejected_input(error))

    context_tokens = count_tokens(sample.context)
    gold = probe.results if probe is not None else {}
    records = []
    for result in results:
        texts = result.get(SENT)  # (held, sent); a program of another origin may not say
        prompt, cached = result.get("prompt_tokens"), result.get("cached_tokens")
        turn = sample.turns[result["turn"]]
        records.append(record(
            turn=result["turn"], question=turn.question, prediction=result["prediction"], gold=turn.answer,
            score=task.score(result["prediction"], turn, sample, "official", scoring),
            score_fixed=task.score(result["prediction"], turn, sample, "fixed", scoring),
            **_gold_fields(gold.get(result["turn"])), prompt_tokens=prompt, cached_tokens=cached,
            new_prefill_tokens=None if prompt is None else prompt - (cached or 0),
            completion_tokens=result.get("completion_tokens"),
            recomputed_tokens=None if texts is None else recomputed_tokens(
                conn.tokenizer, *texts, cached, getattr(conn, "page_size", 1)),
            context_tokens=context_tokens, latency=result.get("latency"), session_seconds=seconds,
            session_turns=len(results), finish_reason=result.get("finish_reason"), request_id=result.get("request_id"),
            turn_extras=_record_fields(turn.extras), sample_meta=_record_fields(sample.metadata),
        ))
    return SessionOutcome(records, None, seconds, probe.problems if probe is not None else [])


def _gold_fields(likelihood) -> dict[str, Any]:
    if likelihood is None:
        return {}
    return {"gold_nll": likelihood.nll, "gold_token_acc": likelihood.token_acc, "gold_tokens": likelihood.tokens}


def _session_probe(conn: Connection, sample: Sample, spec: BenchSpec, namespace: str):
    """The session's gold-likelihood probe (`programs.likelihood.SessionProbe`), or None when the
    spec turns it off or the connection has no server URL (a plain in-process backend)."""
    from programs.likelihood import SessionProbe
    from programs.prompts import answer_text

    url = getattr(conn, "url", None)
    if not spec.gold_likelihood or not url:
        return None
    golds = [answer_text(turn.answer) for turn in sample.turns]
    return SessionProbe(url, conn.tokenizer, golds, namespace, getattr(conn, "page_size", 1))


def _context_scorer(conn: Connection, sample: Sample, point: PointIdentity, namespace: str):
    """The session's scoring pass over its committed context (`programs.context_scoring`) when the
    point's method scores the context that way (KVzip), else None."""
    from kvmethods import from_dict
    from programs.context_scoring import ContextScorer

    url = getattr(conn, "url", None)
    method = from_dict(point.settings) if point.settings.get("method") else None
    if not url or not getattr(method, "scoring_pass", False):
        return None
    return ContextScorer(url, conn.tokenizer, method, getattr(conn, "chat_format", None), namespace, sample.context)


class KeptKVReader:
    """Joins the server's kept-KV lines (one per request, written by the `kvm` backend) to records."""

    def __init__(self, path: Path | None):
        self.path = path
        self.offset = 0
        self.by_rid: dict[str, dict[str, Any]] = {}

    def annotate(self, records: list[TurnRecord]) -> list[TurnRecord]:
        """The records with the kept KV their requests reported (None where none did)."""
        if self.path is not None and self.path.exists():
            with self.path.open("r", encoding="utf-8") as fh:
                fh.seek(self.offset)
                for line in fh:
                    if not line.endswith("\n"):
                        break  # a line still being written: read it next time
                    self.offset += len(line.encode("utf-8"))
                    row = json.loads(line)
                    self.by_rid[row["rid"]] = row
        rows = [self.by_rid.pop(record.request_id, {}) if record.request_id else {} for record in records]
        return [
            record.replace(kept_kv=row.get("kept_kv"), kept_kv_heads=row.get("heads"), kept_map=row.get("kept_map"))
            for record, row in zip(records, rows)
        ]


@dataclass
class PointRun:
    """One sweep point: a KV method (maybe at a swept budget) on its servers, in its own directory."""

    run_dir: Path
    identity: PointIdentity  # its label ("snapkv", "snapkv-b512"), method settings and effective budget
    stats_path: Path | None = None  # the kvm backend's kept-KV lines (managed servers only)
    parallel: int = 1

    @property
    def label(self) -> str:
        return self.identity.label


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
        try:
            samples = load_task_samples(task, spec, count_tokens, on_skip)
        except ValueError as err:  # a generator's sizes that cannot work (`cli.py bench` checks them first)
            raise UsageError(f"{task.name}: {err}") from None
        # The sessions' contexts and gold turns, in SCBench's row layout (for viewers and rescoring).
        (run_dir / files.CONTEXTS).mkdir(exist_ok=True)
        files.write_jsonl_atomic(run_dir / files.CONTEXTS / f"{task.name}.jsonl", [s.to_row() for s in samples])
        if not samples:
            display.message(f"{task.name}: no usable samples")
        per_task.append((task, samples))
    return [(task, mode, sample, index) for mode in spec.modes for task, samples in per_task for index, sample in enumerate(samples)]


def run_bench(
    spec: BenchSpec,
    conns: list[Connection],
    point: PointRun,
    display: Display,
    header: PointHeader,
) -> Summary:
    """Runs the point's unfinished sessions over `conns`, appending each session's records as it
    ends; writes `header` (with the spec) first and the summary of the point's directory last, and
    returns the summary.

    Every session runs in its own radix-cache namespace (`runtime.isolation`), so its reuse comes
    from itself alone, whatever runs beside it. The cache is also emptied before each session (once
    per mode in parallel), which frees the KV pool for the sessions to come.
    """
    from bench.resume import prepare_resume
    from bench.scheduler import EndpointPool, run_sessions
    from data.generators import token_counter

    # SGLang's frontend warns with a traceback when a request fails; the session records that error.
    warnings.filterwarnings("ignore", message="Error in stream_executor", category=UserWarning)
    run_dir = point.run_dir
    finished = prepare_resume(run_dir)  # before the header: older records migrate with the header they ran under
    files.write_json_atomic(run_dir / files.HEADER, header.replace(spec=asdict(spec)).to_dict())
    kept = KeptKVReader(point.stats_path)
    count_tokens = token_counter(conns[0].tokenizer)
    samples_path = run_dir / files.SAMPLES
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
                           budget_turns.get(task.name), point.identity)

    display.start(len(work), f"{point.label}: {','.join(spec.tasks)}")
    started = time.monotonic()
    rejected: list[str] = []  # the errors of sessions whose input cannot run
    try:
        for mode in spec.modes:
            phase = [w for w in work if w[1] == mode]
            if concurrent and spec.flush_between_sessions and phase:
                for conn in pool.live():
                    conn.backend.flush_cache()
            for (task, mode_, sample, index), outcome, conn in run_sessions(phase, run_one, pool, point.parallel):
                _record_session(outcome, kept, samples_path)
                _show(display, point, f"{task.name}/{mode_}/{sample.id}", outcome)
                if outcome.input_error:
                    rejected.append(outcome.error or "")
        if work and not finished and len(rejected) == len(work):  # the point cannot run at all: a rerun would not help
            raise UsageError(
                f"{point.label}: every session failed on its input, as a rerun would: {rejected[0]} "
                "(check --context-tokens, --max-seq-len and the server's context length and --max-total-tokens)"
            )
    finally:
        display.close()
        summary = summarize(load_run(run_dir).records, wall_seconds=round(time.monotonic() - started, 2))
        files.write_json_atomic(run_dir / files.SUMMARY, summary.to_dict())
    return summary


def _note_max_seq_len(spec: BenchSpec, conn: Connection, display: Display) -> None:
    from data.truncation import effective_max_seq_len

    effective = effective_max_seq_len(spec.max_seq_len, getattr(conn, "context_length", None))
    if effective is not None and effective != spec.max_seq_len:
        display.message(f"--max-seq-len {spec.max_seq_len} is capped to the model's context length, {effective} tokens")


def _record_session(outcome: SessionOutcome, kept: KeptKVReader, path: Path) -> None:
    """Appends the session's records, with the kept KV the server reported, in one fsynced write."""
    files.append_jsonl_many(path, [record.to_dict() for record in kept.annotate(outcome.records)])


def _show(display: Display, point: PointRun, label: str, outcome: SessionOutcome) -> None:
    if outcome.error:
        display.session_done(f"{point.label}/{label}", f"failed: {outcome.error}")
        return
    for note in outcome.notes:
        display.message(f"{point.label}/{label}: {note}")
    scores = " ".join(f"{100 * r.score:.0f}" for r in outcome.records)
    accs = [r.gold_token_acc for r in outcome.records]
    gold_text = ""
    if any(a is not None for a in accs):
        gold_text = " gold acc " + " ".join("-" if a is None else f"{a:.0%}" for a in accs)
    reuses = " ".join(f"{r.reuse or 0:.0%}" for r in outcome.records)
    kept_kv = [r.kept_kv for r in outcome.records if r.kept_kv is not None]
    kept_text = f" kept {' '.join(f'{k:.0%}' for k in kept_kv)}" if kept_kv else ""
    recomputed = sum(r.recomputed_tokens or 0 for r in outcome.records)
    evicted = f" (re-prefilled {recomputed} evicted context tokens)" if recomputed else ""
    display.session_done(f"{point.label}/{label}", f"scores {scores}{gold_text} reuse {reuses}{kept_text} {outcome.seconds:.1f}s{evicted}")

"""Rescoring a run from its saved predictions with the tasks' current metrics.

Rescoring needs the scorers, so it imports the task registry, inside the function: reading and
reporting runs never does.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from results import files
from results.identity import PointIdentity
from results.reader import Run, load_contexts, load_summary
from results.records import TurnRecord
from results.report import SCORE_FIELDS
from results.summary import summarize

if TYPE_CHECKING:
    from data.sample import Sample
    from programs.metrics import ScoringContext


def _samples(run: Run, task: str) -> dict[str, Sample] | None:
    """The run's samples of one task by id (None when the run did not save them)."""
    from data.sample import MalformedRow, sample_from_row

    rows = load_contexts(run.path, task)
    if rows is None:
        return None
    samples = {}
    for position, row in enumerate(rows):
        try:
            sample = sample_from_row(row, fallback_id=position)
        except MalformedRow:
            continue
        samples[str(sample.id)] = sample
    return samples


def _scoring_contexts(run: Run, samples: dict[str, dict[str, Sample] | None]) -> dict[tuple, ScoringContext]:
    """The run each record was scored in, per (point, task, mode): the sessions that have records,
    in session order, each with the turns it asked (what the official export holds)."""
    from programs.metrics import ScoringContext

    sessions: dict[tuple, dict[tuple, tuple[Any, int]]] = defaultdict(dict)
    for rec in run.records:
        sample = None if rec.failed else (samples.get(rec.task) or {}).get(rec.sample_id)
        if sample is None:
            continue
        group = sessions[(PointIdentity.of(rec), rec.task, rec.mode)]
        session = (rec.sample_index, rec.sample_id)
        asked = group[session][1] if session in group else 0
        group[session] = (sample, max(asked, rec.turn + 1))
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
    from programs.registry import get_task

    old_summary = load_summary(run.path)  # read first: a damaged one stops the rescore before any write
    counts = {"records": 0, "changed": 0, **{s: 0 for s in scorings}}
    notes: list[str] = []
    cache: dict[str, dict | None] = {}
    for task in dict.fromkeys(rec.task for rec in run.records if not rec.failed):
        cache[task] = _samples(run, task)
        if cache[task] is None:
            notes.append(f"{run.path}: no {files.CONTEXTS}/{task}.jsonl; its records keep their scores")
    contexts = _scoring_contexts(run, cache)
    records: list[TurnRecord] = []
    for rec in run.records:
        records.append(rec)
        if rec.failed:
            continue
        sample = (cache[rec.task] or {}).get(rec.sample_id)
        if cache[rec.task] is not None and (sample is None or rec.turn >= len(sample.turns)):
            notes.append(f"{run.path}: {rec.task} sample {rec.sample_id} (or its turn) is not in its contexts file; left as it was")
            continue
        if sample is None:
            continue
        counts["records"] += 1
        context = contexts[(PointIdentity.of(rec), rec.task, rec.mode)]
        changes = {}
        for scoring in scorings:
            field = SCORE_FIELDS[scoring]
            new = get_task(rec.task).score(rec.prediction, sample.turns[rec.turn], sample, scoring, context)
            old = getattr(rec, field)
            if old is None or abs(new - old) > 1e-9:
                changes[field] = new
                counts[scoring] += 1
        if changes:
            records[-1] = rec.replace(**changes)
            counts["changed"] += 1
    if counts["changed"]:
        files.write_jsonl_atomic(run.path / files.SAMPLES, [r.to_dict() for r in records])
        summary = summarize(records, old_summary.wall_seconds if old_summary else None)  # the run's wall time stays
        files.write_json_atomic(run.path / files.SUMMARY, summary.to_dict())
        run.records = records
    return {"run": str(run.path), **counts, "notes": list(dict.fromkeys(notes))}

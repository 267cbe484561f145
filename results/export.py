"""Predictions in SCBench's own file layout, so the official scorer (`compute_scores.py`) reads them.

One file per task and mode, `official/prediction_scbench_<task>_<multi_turn|scdq>.jsonl`, one line per
turn, sessions in order, then turns, as the official runner (`run_scbench.py`) writes its `case`
dicts: `id` (the session's index), `turn_idx`, `prediction`, `ground_truth` (as its
`get_ground_truth` builds it), then the task's own fields (a Mix turn's `task`; the RepoQA tasks'
`lang`, `repo` and `func_name`). Both come from the task (`TaskSpec.official_ground_truth`,
`TaskSpec.official_fields`). Failed sessions have no predictions and are left out. The official
scorer's numbers for these files are the means of the records' `score` (see `programs.metrics`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from results import files
from results.reader import load_run
from results.records import TurnRecord

MODE_SUFFIX = {"multi-turn": "_multi_turn", "multi-request": "_scdq"}


def official_case(record: TurnRecord, task) -> dict[str, Any]:
    """`task`: the record's `programs.spec.TaskSpec`."""
    return {
        "id": record.sample_index,
        "turn_idx": record.turn,
        "prediction": "" if record.prediction is None else record.prediction,
        "ground_truth": task.official_ground_truth(record.gold, record.turn_extras),
        **task.official_fields(record.turn_extras, record.sample_meta),
    }


def export_official(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Writes the official-layout files for every (task, mode) of a run directory (one sweep point,
    so one method); returns their paths."""
    from programs.registry import get_task  # the tasks' export rules; imported only to export

    out_dir = out_dir or run_dir / files.OFFICIAL
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[TurnRecord]] = defaultdict(list)
    for record in load_run(run_dir).records:
        if not record.failed:
            groups[(record.task, record.mode)].append(record)
    written = []
    for (task, mode), records in sorted(groups.items()):
        records.sort(key=lambda r: (r.sample_index, r.turn))
        path = out_dir / f"prediction_scbench_{task}{MODE_SUFFIX[mode]}.jsonl"
        spec = get_task(task)
        files.write_jsonl_atomic(path, [official_case(r, spec) for r in records])
        written.append(path)
    return written

"""Predictions in SCBench's own file layout, so the official scorer (`compute_scores.py`) reads them.

One file per task and mode, `prediction_scbench_<task>_<multi_turn|scdq>.jsonl`, one line per turn,
sessions in order, then turns, as the official runner (`run_scbench.py`) writes its `case` dicts:
`id` (the session's index), `turn_idx`, `prediction`, `ground_truth` (as its `get_ground_truth`
builds it: `[answer, letter]` for choice_eng, `[answer]` for qa_eng, else the answer as stored), then
`task` for the Mix tasks, and `lang`, `repo` (and `func_name` on RepoQA turns) for the RepoQA tasks.
Failed sessions have no predictions and are left out. The official scorer's numbers for these files
are the means of the records' `score` (see `programs.metrics`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import rundir

MODE_SUFFIX = {"multi-turn": "_multi_turn", "multi-request": "_scdq"}
REPOQA_TASKS = ("repoqa", "repoqa_and_kv")
MIX_TASKS = ("summary_with_needles", "repoqa_and_kv")


def official_ground_truth(record: dict[str, Any]) -> Any:
    """The turn's `ground_truth` as SCBench's `get_ground_truth` writes it."""
    gold = record["gold"]
    if record["task"] == "choice_eng":
        from programs.metrics.choice import choice_labels

        return choice_labels(gold, record.get("turn_extras", {}).get("options"))
    if record["task"] == "qa_eng":
        # A list of accepted answers, which the official scorer iterates; a bare string would be
        # iterated character by character. (A gold already stored as a list stays that list.)
        return list(gold) if isinstance(gold, (list, tuple)) else [gold]
    return gold


def official_case(record: dict[str, Any]) -> dict[str, Any]:
    extras = record.get("turn_extras", {})
    meta = record.get("sample_meta", {})
    prediction = record.get("prediction")
    case = {
        "id": record["sample_index"],
        "turn_idx": record["turn"],
        "prediction": "" if prediction is None else prediction,
        "ground_truth": official_ground_truth(record),
    }
    # Only the Mix rows carry `task`: the official scorer drops rows whose task is not the file's.
    if record["task"] in MIX_TASKS and "task" in extras:
        case["task"] = extras["task"]
    if record["task"] in REPOQA_TASKS:
        case["lang"] = meta.get("lang")
        case["repo"] = meta.get("repo")
        if "name" in extras:
            case["func_name"] = extras["name"]
    return case


def export_official(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Writes the official-layout files for every (task, mode) of a run directory (one sweep point,
    so one method); returns their paths."""
    out_dir = out_dir or run_dir / "official"
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in rundir.read_jsonl(run_dir / rundir.SAMPLES):
        if not record.get("error"):
            groups[(record["task"], record["mode"])].append(record)
    written = []
    for (task, mode), records in sorted(groups.items()):
        records.sort(key=lambda r: (r["sample_index"], r["turn"]))
        path = out_dir / f"prediction_scbench_{task}{MODE_SUFFIX[mode]}.jsonl"
        rundir.write_jsonl_atomic(path, [official_case(r) for r in records])
        written.append(path)
    return written

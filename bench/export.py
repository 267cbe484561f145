"""Predictions in SCBench's own file layout, so the official scorer (`compute_scores.py`) reads them.

One file per task and mode, `prediction_scbench_<task>_<multi_turn|scdq>.jsonl`, one line per turn:
`id` (the session's index), `turn_idx`, `prediction`, `ground_truth` (as the official runner's
`get_ground_truth` builds it), and the task's extra fields (`task` for the Mix tasks; `lang`, `repo`,
`func_name` for RepoQA).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import rundir

MODE_SUFFIX = {"multi-turn": "_multi_turn", "multi-request": "_scdq"}
REPOQA_TASKS = ("repoqa", "repoqa_and_kv")


def official_ground_truth(record: dict[str, Any]) -> Any:
    if record["task"] == "choice_eng":
        from programs.metrics.choice import choice_labels

        return choice_labels(record["gold"], record.get("turn_extras", {}).get("options"))
    return record["gold"]


def official_case(record: dict[str, Any]) -> dict[str, Any]:
    extras = record.get("turn_extras", {})
    meta = record.get("sample_meta", {})
    case = {
        "id": record["sample_index"],
        "turn_idx": record["turn"],
        "prediction": record["prediction"],
        "ground_truth": official_ground_truth(record),
    }
    if "task" in extras:
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

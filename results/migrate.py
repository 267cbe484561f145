"""Older run formats, read as the current one: one step per format version.

The reader finds each file's version (`format_version`; files without one are version 1) and
applies the steps from there up to `FORMAT_VERSION`. A version this program does not know, newer or
not a version at all, is one line naming it. Only this module knows what older files looked like.

Step 1 -> 2: records gain `category` (the task's SCBench category), `method_settings` (the point's
full method settings, from its header) and the method's effective budget in `budget` (version 1
wrote the budget only in `--budgets` sweeps, so `--method-arg budget=512` read as no budget). The
oldest runs, one folder holding every method's records, name their point by `method` alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from results.checks import RunFormatError, found
from results.headers import PointHeader, SweepIndex
from results.records import FORMAT_VERSION, TurnRecord
from results.summary import Summary

# Version 1 knew these twelve tasks, with the categories of SCBench's paper (Table 2).
V1_TASK_CATEGORIES = {
    "kv": "String Retrieval", "prefix_suffix": "String Retrieval", "vt": "String Retrieval",
    "repoqa": "Semantic Retrieval", "qa_eng": "Semantic Retrieval", "qa_chn": "Semantic Retrieval",
    "choice_eng": "Semantic Retrieval",
    "many_shot": "Global Information", "mf": "Global Information", "summary": "Global Information",
    "summary_with_needles": "Multi-task", "repoqa_and_kv": "Multi-task",
}
# Version 1's methods whose `budget` changed nothing (kvmethods' `uses_budget` False).
V1_BUDGETLESS = frozenset({"full", "kivi", "fp8"})


def version_of(data: dict[str, Any], where: str) -> int:
    """The format version a file's object says it is in (1 when it does not say)."""
    version = data.get("format_version", 1)
    if type(version) is not int or version < 1:
        raise RunFormatError(f"{where}: format_version {version!r} is not a run format this program knows "
                             f"(it reads versions 1 to {FORMAT_VERSION})")
    if version > FORMAT_VERSION:
        raise RunFormatError(f"{where}: run format version {version} is newer than this program reads "
                             f"(versions 1 to {FORMAT_VERSION}); read it with a newer version of the project")
    return version


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _v1_effective_budget(settings: dict[str, Any]) -> Any:
    """The budget a version-1 method used (a composition: its KV method's, else its prefill's)."""
    if "prefill" in settings and "kv" in settings:
        for part in (_as_dict(settings["kv"]), _as_dict(settings["prefill"])):
            if part.get("method") not in V1_BUDGETLESS:
                return part.get("budget")
        return None
    return None if settings.get("method") in V1_BUDGETLESS else settings.get("budget")


def _keep(data: dict[str, Any], cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _header_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    out = _keep(data, PointHeader)
    method = data.get("method")
    if out.get("budget") is None and isinstance(method, dict):
        out["budget"] = _v1_effective_budget(method)
    return {**out, "format_version": 2}


def _sweep_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    return {**_keep(data, SweepIndex), "format_version": 2}


def _summary_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    return {"results": data.get("results", []), "wall_seconds": data.get("wall_seconds"), "format_version": 2}


def _record_1_to_2(data: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """`header`: the point's header.json as found (any version; {} when there is none)."""
    out = _keep(data, TurnRecord)
    point_method = _as_dict(header.get("method"))
    method = data.get("method") or point_method.get("method") or "full"
    if point_method.get("method") == method:
        settings = point_method
    else:  # the oldest layout: every method's settings in the header's `methods` list
        listed = [m for m in header.get("methods") or [] if isinstance(m, dict) and m.get("method") == method]
        settings = listed[0] if listed else {"method": method}
    budget = data.get("budget")
    if "sample_id" in data and type(data["sample_id"]) is int:  # rows without an id are numbered
        out["sample_id"] = str(data["sample_id"])
    out.setdefault("sample_index", 0)
    return {
        **out,
        "format_version": 2,
        "category": V1_TASK_CATEGORIES.get(data.get("task")),
        "point": data.get("point") or header.get("method_label") or method,
        "method": method,
        "method_settings": settings,
        "budget": _v1_effective_budget(settings) if budget is None else budget,
    }


@dataclass(frozen=True)
class Step:
    """How a version-N file of each kind becomes version N + 1 (a record also sees its point's header)."""

    header: Callable[[dict[str, Any]], dict[str, Any]]
    sweep: Callable[[dict[str, Any]], dict[str, Any]]
    summary: Callable[[dict[str, Any]], dict[str, Any]]
    record: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


STEPS: dict[int, Step] = {1: Step(_header_1_to_2, _sweep_1_to_2, _summary_1_to_2, _record_1_to_2)}


def _object(data: Any, where: str) -> dict[str, Any]:
    if type(data) is not dict:
        raise RunFormatError(f"{where}: expected a JSON object, found {found(data)}")
    return data


def point_header(data: Any, where: str) -> PointHeader:
    data = _object(data, where)
    for version in range(version_of(data, where), FORMAT_VERSION):
        data = STEPS[version].header(data)
    return PointHeader.from_dict(data, where)


def sweep_index(data: Any, where: str) -> SweepIndex:
    data = _object(data, where)
    for version in range(version_of(data, where), FORMAT_VERSION):
        data = STEPS[version].sweep(data)
    return SweepIndex.from_dict(data, where)


def summary(data: Any, where: str) -> Summary:
    data = _object(data, where)
    for version in range(version_of(data, where), FORMAT_VERSION):
        data = STEPS[version].summary(data)
    return Summary.from_dict(data, where)


def turn_record(data: Any, where: str, header: dict[str, Any]) -> TurnRecord:
    """`header`: the point's header.json object as found ({} when there is none)."""
    data = _object(data, where)
    for version in range(version_of(data, where), FORMAT_VERSION):
        data = STEPS[version].record(data, header)
    return TurnRecord.from_dict(data, where)

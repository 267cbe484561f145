"""A point's identity: its label, its method's full settings and its effective budget.

Records of the same identity pool (several runs of one point); records that differ in any setting
never do, even under one label (two sweeps that both ran "snapkv", at budgets 256 and 512). Where
labels repeat, `display_names` tells the points apart by the settings that differ:
"snapkv (budget=256)".
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from results.records import TurnRecord


@dataclass(frozen=True)
class PointIdentity:
    label: str  # the point's name in its sweep: "snapkv", "snapkv-b512"
    method: str  # the method's name
    budget: int | None  # the effective budget (None: the method has none)
    settings_json: str  # the method's settings as canonical JSON (hashable)

    @classmethod
    def make(cls, label: str, settings: dict[str, Any], budget: int | None) -> PointIdentity:
        method = str(settings.get("method", label))
        return cls(label, method, budget, json.dumps(settings, sort_keys=True, default=str))

    @classmethod
    def of(cls, record: TurnRecord) -> PointIdentity:
        return cls(record.point, record.method, record.budget,
                   json.dumps(record.method_settings, sort_keys=True, default=str))

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.settings_json)


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"kv": {"budget": 1}} -> {"kv.budget": 1}: a composition's parts' settings by path."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def display_names(identities: Iterable[PointIdentity]) -> dict[PointIdentity, str]:
    """A name per identity: its label, plus the settings that differ where labels repeat."""
    by_label: dict[str, list[PointIdentity]] = defaultdict(list)
    for ident in dict.fromkeys(identities):
        by_label[ident.label].append(ident)
    names = {}
    for label, group in by_label.items():
        if len(group) == 1:
            names[group[0]] = label
            continue
        flats = [_flat(i.settings) for i in group]
        keys = list(dict.fromkeys(k for flat in flats for k in flat))
        differing = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats}) > 1]
        if not differing:  # the same settings with another effective budget
            flats, differing = [{"budget": i.budget} for i in group], ["budget"]
        for ident, flat in zip(group, flats):
            shown = ", ".join(f"{k}={_shown(flat[k]) if k in flat else '-'}" for k in differing)
            names[ident] = f"{label} ({shown})"
    return names

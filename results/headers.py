"""What a point's header.json and a sweep's sweep.json hold, typed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from results import checks
from results.records import FORMAT_VERSION


@dataclass(frozen=True)
class PointHeader(checks.VersionedRecord):
    """A point's header.json: every resolved argument, the method and its settings, the model, the
    server, the versions. Older runs lack most of it (None)."""

    format_version: int = FORMAT_VERSION
    argv: list[str] | None = None
    versions: dict[str, Any] | None = None  # Python, SGLang, torch, transformers, datasets, git commit
    sweep_dir: str | None = None
    request_timeout: float | None = None
    spec: dict[str, Any] | None = None  # bench.runner.BenchSpec as a dict
    method: dict[str, Any] | None = None  # the method's full settings (kvmethods' to_dict)
    method_label: str | None = None  # the point's label
    budget: int | None = None  # the method's effective budget; None for a method that has none
    server: dict[str, Any] | None = None  # the managed server's command, environment, start time
    model_path: str | None = None
    chat_template: bool | None = None
    finished: bool = False  # every session ran without error

    def replace(self, **changes: Any) -> PointHeader:
        return dataclasses.replace(self, **changes)

    @property
    def tasks(self) -> list[str]:
        """The tasks the point was asked to run, in order (empty when the header does not say)."""
        tasks = (self.spec or {}).get("tasks")
        return [t for t in tasks if isinstance(t, str)] if isinstance(tasks, list) else []


@dataclass(frozen=True)
class SweepIndex(checks.VersionedRecord):
    """A sweep's sweep.json: its arguments and its points' labels in run order."""

    points: list[str]
    format_version: int = FORMAT_VERSION
    argv: list[str] | None = None
    versions: dict[str, Any] | None = None
    sweep_dir: str | None = None
    request_timeout: float | None = None
    spec: dict[str, Any] | None = None
    servers: dict[str, Any] | None = None  # bench.sweep.Servers as a dict
    parallel: int | None = None  # sessions in flight at once

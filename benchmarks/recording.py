"""Recording what the SGLang frontend sends, and grouping the requests that ran together."""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    """One HTTP request the SGLang frontend made: what it sent, what came back, when."""

    url: str
    payload: dict[str, Any] | None
    start: float
    end: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    text: str | None = None

    @property
    def is_generate(self) -> bool:
        return self.url.endswith("/generate")


class Recorder:
    """Patches the frontend's `http_request` (sglang.lang.backend.runtime_endpoint) to record every
    request: the exact JSON payload, the response's meta_info, start and end times."""

    def __init__(self):
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Recorder:
        import sglang.lang.backend.runtime_endpoint as endpoint

        self._module = endpoint
        self._original = endpoint.http_request
        original = self._original

        def recording(url, json=None, *args, **kwargs):
            call = Call(url=url, payload=copy.deepcopy(json), start=time.monotonic())
            res = original(url, json, *args, **kwargs)
            call.end = time.monotonic()
            with contextlib.suppress(Exception):
                body = res.json()
                if isinstance(body, dict):
                    call.meta = body.get("meta_info") or {}
                    call.text = body.get("text")
            with self._lock:
                self.calls.append(call)
            return res

        endpoint.http_request = recording
        return self

    def __exit__(self, *exc) -> None:
        self._module.http_request = self._original

    def generate_calls(self) -> list[Call]:
        return sorted((c for c in self.calls if c.is_generate), key=lambda c: c.start)


def waves(calls: Sequence[Call]) -> list[list[Call]]:
    """Calls grouped by overlap in time: a call that starts before every call of the current group
    has ended runs concurrently with it. Sequential calls give groups of one."""
    groups: list[list[Call]] = []
    horizon = float("-inf")
    for call in sorted(calls, key=lambda c: c.start):
        if groups and call.start < horizon:
            groups[-1].append(call)
            horizon = max(horizon, call.end)
        else:
            groups.append([call])
            horizon = call.end
    return groups

"""Recording what the SGLang frontend sends, and grouping the requests that ran together."""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Callable, Sequence
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


# Rewrites a /generate payload in place before it is sent (e.g. to fix the decode length).
Rewrite = Callable[[dict[str, Any]], None]


class Recorder:
    """Patches the frontend's `http_request` (sglang.lang.backend.runtime_endpoint) to record every
    request: the exact JSON payload, the response's meta_info, start and end times. `rewrite`, if
    given, changes each /generate payload before it is sent; the recorded payload is what was sent."""

    def __init__(self, rewrite: Rewrite | None = None):
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._rewrite = rewrite

    def __enter__(self) -> Recorder:
        import sglang.lang.backend.runtime_endpoint as endpoint

        self._module = endpoint
        self._original = endpoint.http_request
        original = self._original

        rewrite = self._rewrite

        def recording(url, json=None, *args, **kwargs):
            if rewrite is not None and json is not None and url.endswith("/generate"):
                json = copy.deepcopy(json)
                rewrite(json)
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


def fixed_decode(tokens: int) -> Rewrite:
    """A rewrite that makes every decoding request decode exactly `tokens` tokens (EOS and stop
    strings ignored); requests that only prefill (max_new_tokens 0) are left alone. Two servers
    given the same session then do the same decode work whatever their answers."""

    def rewrite(payload: dict[str, Any]) -> None:
        params = payload.setdefault("sampling_params", {})
        if params.get("max_new_tokens", 1) == 0:
            return
        params["max_new_tokens"] = tokens
        params["ignore_eos"] = True
        for key in ("stop", "stop_token_ids", "stop_regex"):
            params.pop(key, None)

    return rewrite

"""Talking to a benchmark's server with raw HTTP: warm-up, cache flush, /generate, and replays of
recorded requests. Servers themselves start through `runtime.method_server.serve_method`, exactly as
`cli.py bench --methods` starts them."""

from __future__ import annotations

import copy
import json
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def post_generate(url: str, payload: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """POST /generate with a JSON payload (the same urllib path SGLang's frontend uses)."""
    data = json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(url.rstrip("/") + "/generate", data=data,
                                 headers={"Content-Type": "application/json; charset=utf-8"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def warm_up(url: str) -> None:
    """One short request, so first-request costs do not land in the first measured session."""
    post_generate(url, {"text": "Hello", "sampling_params": {"max_new_tokens": 4, "temperature": 0.0}})


def flush_cache(url: str) -> None:
    from runtime.isolation import FLUSH_IDLE_TIMEOUT_S, flush_url  # waits for the scheduler to go idle

    req = urllib.request.Request(flush_url(url), method="POST")
    with urllib.request.urlopen(req, timeout=FLUSH_IDLE_TIMEOUT_S + 30) as resp:  # outlasts the server's wait
        resp.read()


def replay(url: str, groups: Sequence[Sequence[dict[str, Any]]]) -> tuple[float, list[dict[str, Any]]]:
    """Sends each group of payloads in order, the payloads of a group concurrently (one thread each,
    as the frontend's forks do); returns (wall seconds, responses in payload order)."""
    responses: list[dict[str, Any]] = []
    started = time.monotonic()
    for group in groups:
        if len(group) == 1:
            responses.append(post_generate(url, group[0]))
        else:
            with ThreadPoolExecutor(len(group)) as pool:
                responses += list(pool.map(lambda p: post_generate(url, p), group))
    return time.monotonic() - started, responses


def prefill_only(payload: dict[str, Any]) -> dict[str, Any]:
    """The same request without decoding (max_new_tokens=0): the server only prefills the prompt."""
    out = copy.deepcopy(payload)
    out.setdefault("sampling_params", {})["max_new_tokens"] = 0
    return out

"""The gold answer's teacher-forced likelihood, read through the KV a turn's generation saw.

A model too small to generate an answer can still show whether its KV holds the answer's
information: given the turn's exact prompt and the gold answer's first tokens, how well does it
predict the rest? One prefill-only request per turn sends the prompt's token ids (as the server
tokenizes the prompt, so the session's cached KV matches them) followed by the gold answer's ids,
asks for the input tokens' log-probabilities from the prompt's last token on (SGLang then reuses
the cached prompt up to there and computes only the answer's rows, over the cached, possibly
compressed KV), and reads:

- `gold_nll`: the mean negative log-likelihood per gold token (nats);
- `gold_token_acc`: the share of gold tokens that are the model's argmax given what precedes them.

The request is marked as a probe (`PROBE_RID_PREFIX` in its request id): the `kvm` backend never
compresses on it, records no kept-KV line for it, and marks nothing in its slot state, so later
turns see exactly the state they would see without it. Its own slots are fresh allocations, and
SGLang frees them when it finds the prefix already cached. What the answer's rows attend: dense
attention for sparse-prefill methods (the rows extend a cached context, as a later turn does), the
compressed context for KV-dropping methods, a per-row chunk selection for Quest (as its follow-up
rows), the quantized context for KIVI: what the turn's decoding saw, row by row.
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
import uuid
from dataclasses import dataclass, replace
from typing import Any

from flashinfer_ext.plugin import PROBE_RID_PREFIX  # the request-id marker the kvm backend honours


@dataclass(frozen=True)
class GoldLikelihood:
    nll: float  # mean negative log-likelihood per gold token, nats
    token_acc: float  # share of gold tokens that were the argmax
    tokens: int  # gold tokens scored
    cached_tokens: int | None  # prompt tokens the probe found in the radix cache
    prompt_tokens: int | None = None  # the prompt's length in tokens


def probe_payload(prompt_ids: list[int], gold_ids: list[int], namespace: str | None) -> dict[str, Any]:
    """The /generate request: prompt + gold ids, no new tokens, input logprobs (with the top-1)
    from the prompt's last token on, so the first gold token's logprob is computed too."""
    payload: dict[str, Any] = {
        "input_ids": prompt_ids + gold_ids,
        "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
        "return_logprob": True,
        "logprob_start_len": len(prompt_ids) - 1,
        "top_logprobs_num": 1,
        "rid": PROBE_RID_PREFIX + uuid.uuid4().hex,
    }
    if namespace:
        payload["extra_key"] = namespace
    return payload


def read_probe(meta: dict[str, Any], gold_ids: list[int]) -> GoldLikelihood:
    """Scores from the response's `input_token_logprobs` / `input_top_logprobs`: one entry per input
    token from the prompt's last token on (its own logprob, which needs the token before, is None or
    ignored), then one per gold token."""
    logprobs = meta.get("input_token_logprobs") or []
    tops = meta.get("input_top_logprobs") or []
    n = len(gold_ids)
    entries, top_entries = logprobs[-n:], tops[-n:]
    if len(entries) != n or len(top_entries) != n:
        raise ValueError(f"gold probe: expected {n} gold token logprobs, got {len(entries)} / {len(top_entries)}")
    nll, hits = 0.0, 0
    for gold, entry, top in zip(gold_ids, entries, top_entries):
        logprob, token = entry[0], entry[1]
        if token != gold or logprob is None or not math.isfinite(logprob):
            raise ValueError(f"gold probe: logprob entry {entry!r} does not score gold token {gold}")
        nll -= logprob
        best = top[0] if top else None
        hits += int(best is not None and best[1] == gold)
    return GoldLikelihood(nll=nll / n, token_acc=hits / n, tokens=n, cached_tokens=meta.get("cached_tokens"))


def gold_likelihood(url: str, tokenizer, prompt: str, gold: str, namespace: str | None = None,
                    timeout: float | None = None) -> GoldLikelihood | None:
    """The gold answer's likelihood after `prompt` on the server at `url` (None for an empty gold).
    `namespace`: the session's radix namespace, so the probe reuses the session's own cached KV."""
    prompt_ids = tokenizer.encode(prompt)  # as the server tokenizes the prompt text it was sent
    gold_ids = tokenizer.encode(gold, add_special_tokens=False)
    if not gold_ids or not prompt_ids:
        return None
    body = json.dumps(probe_payload(prompt_ids, gold_ids, namespace)).encode()
    request = urllib.request.Request(url.rstrip("/") + "/generate", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        meta = json.loads(response.read())["meta_info"]
    return replace(read_probe(meta, gold_ids), prompt_tokens=len(prompt_ids))


class SessionProbe:
    """The gold likelihood of each turn of one session, measured as the session runs: the program's
    `after_turn` callback (`programs.base`), so each turn is probed through the KV its own
    generation saw, before the next turn changes anything.

    A probe that fails, or that finds less of the prompt cached than SGLang can reuse (part of the
    context was evicted and the probe would have recomputed it without the method), leaves that
    turn unmeasured and says why in `problems`; the session itself goes on.
    """

    def __init__(self, url: str, tokenizer, golds: list[str], namespace: str | None, page_size: int = 1,
                 timeout: float | None = None):
        self.url, self.tokenizer, self.golds = url, tokenizer, golds
        self.namespace, self.page_size, self.timeout = namespace, max(1, page_size), timeout
        self.results: dict[int, GoldLikelihood] = {}
        self.problems: list[str] = []
        self.seconds = 0.0  # time spent probing, which the session's own timing leaves out

    def __call__(self, turn: int, prompt: str) -> None:
        started = time.monotonic()
        try:
            found = gold_likelihood(self.url, self.tokenizer, prompt, self.golds[turn], self.namespace, self.timeout)
        except (OSError, ValueError, KeyError) as err:  # HTTP, JSON, or a response without the logprobs
            self.problems.append(f"turn {turn + 1}: gold probe failed ({type(err).__name__}: {err})")
            found = None
        self.seconds += time.monotonic() - started
        if found is None:
            return
        reusable = (found.prompt_tokens - 1) // self.page_size * self.page_size
        if found.cached_tokens is not None and found.cached_tokens < reusable:
            self.problems.append(f"turn {turn + 1}: gold probe found {found.cached_tokens} of {reusable} prompt "
                                 "tokens cached (evicted); not measured")
            return
        self.results[turn] = found

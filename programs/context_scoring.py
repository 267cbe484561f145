"""The scoring pass of a method that scores the committed context by a pass over it (KVzip).

Once the context piece is committed (`programs.base` calls the session's `score_context` with its
text), one prefill-only request per chunk of the context goes to the server in the session's radix
namespace: the context's token ids (found in the cache) followed by KVzip's reconstruction input
for the chunk (`kvmethods.kvzip`: the repeat prompt, the template's assistant opening, the chunk's
tokens). Its request id (`flashinfer_ext.context_scoring.ScoringChunk`) tells the `kvm` backend
which context positions the chunk covers; the backend scores them, and after the last chunk keeps
the method's selection visible. The requests' own tokens never enter the radix tree
(`flashinfer_ext.plugin.SKIP_INSERT_RID_PREFIXES`).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any

from flashinfer_ext.context_scoring import ScoringChunk

_SEP = "[SEPSEPSEP]"
PLAIN_POSTFIX = "\n\nAnswer: "  # KVzip's template without a chat format (model/template.py)


def assistant_opening(chat) -> str:
    """What closes the user's message and opens the answer (KVzip's template `postfix`)."""
    if chat is None:
        return PLAIN_POSTFIX
    return chat.render([{"role": "user", "content": _SEP}]).split(_SEP, 1)[1]


def scoring_requests(
    context_ids: list[int], sink: int, prompt_ids: tuple[list[int], list[int]], postfix_ids: list[int],
    chunk_size: int, prev_postfix_size: int, session: str,
) -> list[tuple[ScoringChunk, list[int]]]:
    """(chunk, input ids) per chunk of the context after its first `sink` tokens, as KVzip's
    `self_task` builds them: chunk 0 asks the first prompt (`kvmethods.kvzip.FIRST_CHUNK_PROMPT`),
    a later chunk the next one (`NEXT_CHUNK_PROMPT`) followed by the previous chunk's last `prev_postfix_size` tokens."""
    first_prompt, next_prompt = prompt_ids
    n = len(context_ids)
    starts = list(range(sink, n, chunk_size))
    requests = []
    for i, start in enumerate(starts):
        end = min(start + chunk_size, n)
        chunk_ids = context_ids[start:end]
        if i == 0:
            asked = list(first_prompt)
        else:
            quoted = context_ids[max(starts[i - 1], start - prev_postfix_size) : start] if prev_postfix_size else []
            asked = list(next_prompt) + quoted
        chunk = ScoringChunk(session, sink, start, end, n, i == len(starts) - 1)
        requests.append((chunk, context_ids + asked + postfix_ids + chunk_ids))
    return requests


class ContextScorer:
    """`score_context(context_text)` for one session: sends the scoring pass and waits for it."""

    def __init__(self, url: str, tokenizer, method, chat, namespace: str | None, sample_context: str | None = None,
                 timeout: float | None = None):
        self.url, self.tokenizer, self.method, self.chat = url, tokenizer, method, chat
        self.namespace, self.sample_context, self.timeout = namespace, sample_context, timeout
        self.seconds = 0.0  # time the pass took (the session's timing includes it: it is the method's cost)
        self.chunks: list[ScoringChunk] = []

    def sink_tokens(self, context_text: str) -> int:
        """Tokens before the sample's context in the piece (chat header, instruction): KVzip's
        system prompt, never evicted."""
        at = context_text.find(self.sample_context[:200]) if self.sample_context else -1  # a cut context keeps its start
        if at <= 0:
            return 0
        return len(self.tokenizer.encode(context_text[:at]))

    def __call__(self, context_text: str) -> None:
        from kvmethods.kvzip import FIRST_CHUNK_PROMPT, NEXT_CHUNK_PROMPT  # torch: only when a pass runs

        started = time.monotonic()
        ids = self.tokenizer.encode(context_text)  # as the server tokenizes the committed text
        sink = min(self.sink_tokens(context_text), max(len(ids) - 1, 0))
        encode = lambda text: self.tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
        requests = scoring_requests(
            ids, sink, (encode(FIRST_CHUNK_PROMPT), encode(NEXT_CHUNK_PROMPT)), encode(assistant_opening(self.chat)),
            self.method.chunk_size, self.method.prev_postfix_size, uuid.uuid4().hex,
        )
        for chunk, input_ids in requests:
            self._send(chunk, input_ids)
            self.chunks.append(chunk)
        self.seconds += time.monotonic() - started

    def _send(self, chunk: ScoringChunk, input_ids: list[int]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "input_ids": input_ids,
            "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
            "rid": chunk.rid(),
        }
        if self.namespace:
            payload["extra_key"] = self.namespace
        request = urllib.request.Request(self.url.rstrip("/") + "/generate", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())["meta_info"]

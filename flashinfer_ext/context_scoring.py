"""The scoring pass of a method that scores the context by a pass over it (KVzip): the request ids
that carry a chunk's coordinates, and the per-session scores the `kvm` backend gathers from them.

The client (`programs.context_scoring`) sends one request per chunk of the committed context,
each request id `SCORING_RID_PREFIX` + "<session>.<sink>.<start>.<end>.<context_len>.<last>": the
request's input is the context (cached) then the reconstruction prompt and the chunk repeated;
`start:end` are the chunk's positions in the context, the first `sink` positions are never scored,
and `last` (0/1) says the session's scores are complete after this request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

SCORING_RID_PREFIX = "scbench-context-score-"
MAX_OPEN_SESSIONS = 64  # sessions whose scoring is under way (a failed one is dropped, oldest first)


@dataclass(frozen=True)
class ScoringChunk:
    session: str
    sink: int
    start: int
    end: int
    context_len: int
    last: bool

    def rid(self) -> str:
        fields = (self.session, self.sink, self.start, self.end, self.context_len, int(self.last))
        return SCORING_RID_PREFIX + ".".join(str(f) for f in fields)


def parse_scoring_rid(rid) -> ScoringChunk | None:
    """The chunk a request id describes, None for any other request."""
    if not isinstance(rid, str) or not rid.startswith(SCORING_RID_PREFIX):
        return None
    parts = rid[len(SCORING_RID_PREFIX) :].split(".")
    if len(parts) != 6 or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(f"malformed context-scoring request id {rid!r}")
    sink, start, end, context_len, last = (int(p) for p in parts[1:])
    if not 0 <= sink <= start < end <= context_len:
        raise ValueError(f"context-scoring request id {rid!r}: need 0 <= sink <= start < end <= context_len")
    return ScoringChunk(parts[0], sink, start, end, context_len, bool(last))


class ContextScores:
    """Scores of each session's context slots, per layer and KV head, filled chunk by chunk; when
    the last chunk's last layer is scored the method selects and the kept slots stay visible."""

    def __init__(self, method, num_layers: int):
        self.method = method
        self.num_layers = num_layers
        self.sessions: dict[str, object] = {}

    def add(self, chunk: ScoringChunk, layer: int, query, keys, slots, scale: float, state) -> None:
        """query [q_len, Hq, D]: the request's extend rows; keys [seq_len, Hkv, D] and slots
        [seq_len]: the whole request, context first, the reconstruction rows last."""
        import torch

        from kvmethods.kvzip import reconstruction_scores

        rows = keys.shape[0] - chunk.context_len
        if rows < 1 or rows > query.shape[0]:
            # Not the request the client builds (its reconstruction rows were found cached): the
            # session's scoring is abandoned and its context stays whole, the server goes on.
            log.warning("context-scoring request %s: %d tokens, %d computed, context %d; not scored",
                        chunk.rid(), keys.shape[0], query.shape[0], chunk.context_len)
            self.sessions.pop(chunk.session, None)
            return
        scores = self.sessions.get(chunk.session)
        if scores is None:
            while len(self.sessions) >= MAX_OPEN_SESSIONS:
                self.sessions.pop(next(iter(self.sessions)))
            shape = (self.num_layers, keys.shape[1], chunk.context_len - chunk.sink)
            scores = self.sessions[chunk.session] = torch.zeros(shape, dtype=query.dtype, device=query.device)
        scores[layer, :, chunk.start - chunk.sink : chunk.end - chunk.sink] = reconstruction_scores(
            query[query.shape[0] - rows :], keys, chunk.sink, chunk.start, chunk.end, scale
        )
        if chunk.last and layer == self.num_layers - 1:
            del self.sessions[chunk.session]
            keep = self.method.select(scores)
            context = slots[chunk.sink : chunk.context_len]
            for layer_id in range(self.num_layers):
                state.set_visibility(layer_id, context, keep[layer_id])

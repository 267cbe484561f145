"""KVzip: query-agnostic eviction scored by how much a context-reconstruction pass attends each KV."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from kvmethods.base import KVMethod, check_qk
from kvmethods.registry import register

LEVELS = ("pair", "pair-uniform")
# KVzip's reconstruction prompts (model/wrapper.py, `self_task`).
FIRST_CHUNK_PROMPT = "\n\nRepeat the previous context exactly."
NEXT_CHUNK_PROMPT = "\n\nRepeat the part of the previous context exactly, starting with "


def reconstruction_scores(
    q_rows: torch.Tensor, keys: torch.Tensor, sink: int, start: int, end: int, scale: float | None = None
) -> torch.Tensor:
    """The score of context keys [start, end) from one reconstruction chunk, as KVzip computes it
    (attention/score.py, `KVScore._get_score`).

    q_rows [R, Hq, D]: the queries of the reconstruction request's last R positions (prompt + the
    chunk repeated); keys [kv_len, Hkv, D] with those R positions last. The rows attend the
    first `sink` keys, the chunk's keys and their own keys (causal among themselves), softmax in
    the queries' dtype (KVzip: "not fp32"); the score of a chunk key is the largest probability
    any row of its KV head's query group gives it. Returns [Hkv, end - start] in the queries' dtype.
    """
    rows, hq, d = q_rows.shape
    check_qk(q_rows, keys, "q_rows")
    hkv = keys.shape[1]
    picked = torch.cat([keys[:sink], keys[start:end], keys[keys.shape[0] - rows :]]).to(q_rows.dtype)
    query = q_rows.permute(1, 0, 2).reshape(hkv, hq // hkv, rows, d)  # [Hkv, G, R, D]
    logits = torch.matmul(query, picked.permute(1, 2, 0)[:, None])  # [Hkv, G, R, S + C + R]
    logits = logits / math.sqrt(d) if scale is None else logits * scale
    causal = torch.full((rows, rows), torch.finfo(logits.dtype).min, device=logits.device)
    cond = torch.arange(rows, device=logits.device)
    causal.masked_fill_(cond < (cond + 1).view(rows, 1), 0)
    logits[..., -rows:, -rows:] += causal
    probs = torch.softmax(logits, dim=-1)
    return probs[..., sink : sink + end - start].amax(dim=(1, 2))


@register("kvzip")
@dataclass(frozen=True)
class KVzip(KVMethod):
    """KVzip, "KVzip: Query-Agnostic KV Cache Compression with Context Reconstruction"
    (https://arxiv.org/abs/2505.23416; code snu-mllab/KVzip).

    After the context's prefill, a scoring pass asks the model to repeat the context
    (`FIRST_CHUNK_PROMPT`, then the chat template's assistant opening, then the context's tokens;
    a context longer than `chunk_size` tokens is repeated chunk by chunk, each later chunk asked
    with `NEXT_CHUNK_PROMPT` and the previous chunk's last `prev_postfix_size` tokens). In every
    layer each context key gets the largest attention any reconstruction query of its KV head's
    group gives it (`reconstruction_scores`: the chunk's rows attend the sink, the chunk and
    themselves). The first `sink` tokens of the context piece (the chat header and instruction
    before the sample's context: KVzip's system prompt) are never evicted nor scored. Then:
    - level "pair" (KVzip's default): one threshold over every layer and KV head, so heads keep
      different numbers of keys (`kept_keys` of the context's scored keys per head on average,
      less one as KVzip's `_threshold` does);
    - level "pair-uniform": the top `kept_keys` per KV head in every layer.
    The pass runs through the server (the runner sends it, `programs.context_scoring`); its own
    tokens never enter the radix cache, and the gold probes never score. Selection per KV head
    (the scores are maxed over the query group), so Hkv x kept keys. KVzip's context-independent
    "head" level (stored head scores) is not provided.

    Both modes are query-agnostic: in multi-turn mode the context piece is committed and scored
    before question 1 is sent (KVzip prefills, scores and prunes the context before any query).

    Fields:
        budget (4096): scored context keys kept per KV head (on average with level "pair").
        ratio (0.0): when > 0, keep this share of the scored context instead of `budget`
            (KVzip's `--ratio`, 0.3 in its code); budget sweeps use `budget`.
        level ("pair"): "pair" (global threshold, KVzip's default) or "pair-uniform".
        chunk_size (2000): context tokens repeated per scoring request (KVzip's `self_task`).
        prev_postfix_size (8): previous chunk's tokens quoted in a later chunk's prompt.
    """

    family: ClassVar[str] = "kv_dropping"
    phases: ClassVar[frozenset[str]] = frozenset({"compress"})
    stateful: ClassVar[bool] = True
    # The server must run a reconstruction pass over the committed context before the questions.
    scoring_pass: ClassVar[bool] = True

    ratio: float = 0.0
    level: str = "pair"
    chunk_size: int = 2000
    prev_postfix_size: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("ratio", lo=0.0, hi=1.0)
        self._check_range("chunk_size", lo=1)
        self._check_range("prev_postfix_size", lo=0)
        self._require(self.level in LEVELS, f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")

    def kept_keys(self, scored: int) -> int:
        """Keys kept per head out of `scored` context keys."""
        return int(scored * self.ratio) if self.ratio > 0 else min(self.budget, scored)

    def compress(
        self, q_window: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1
    ) -> torch.Tensor:
        """The prefill decides nothing: the scoring pass does (`select`)."""
        check_qk(q_window, k, "q_window")
        return torch.ones(k.shape[1], k.shape[0], dtype=torch.bool, device=k.device)

    def select(self, scores: torch.Tensor) -> torch.Tensor:
        """scores [layers, Hkv, n] of the scored context keys -> bool keep mask of that shape."""
        if scores.dim() != 3:
            raise ValueError(f"{self.label}.select expects scores [layers, heads, n], got {tuple(scores.shape)}")
        n = scores.shape[-1]
        kept = self.kept_keys(n)
        if kept >= n:
            return torch.ones_like(scores, dtype=torch.bool)
        if self.level == "pair-uniform":
            keep = torch.zeros_like(scores, dtype=torch.bool)
            return keep.scatter_(-1, torch.topk(scores, kept, dim=-1).indices, True)
        # KVzip's `_threshold`: the (total * ratio)-th largest score is the bar, strictly above it stays.
        total = scores.numel() * kept // n if self.ratio <= 0 else int(scores.numel() * self.ratio)
        ordered = torch.sort(scores.reshape(-1), descending=True).values
        return scores > ordered[max(total - 1, 0)].item()

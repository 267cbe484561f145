"""MInference: per-head vertical-slash sparse prefill, estimated online from the last queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from kvmethods.base import SparsePrefillMethod, last_query_probs, slash_scores
from kvmethods.plan import SparsePlan
from kvmethods.registry import register


@register("minference")
@dataclass(frozen=True)
class MInference(SparsePrefillMethod):
    """MInference 1.0: "Accelerating Pre-filling for Long-Context LLMs via Dynamic Sparse
    Attention" (https://arxiv.org/abs/2407.02490), vertical-slash pattern, SCBench's setting.

    Per KV head, the attention of the last `last_q` queries (softmax, averaged over the head's
    query group) scores every key column (vertical) and every diagonal offset (slash). Each row then
    sees the top `vertical_size` columns and the top `budget - vertical_size` diagonals. As in the
    reference code the first 30 columns and the nearest 100 diagonals are always kept, and the sizes
    are at least 30 verticals and 50 slashes. Prefills shorter than `min_q_len` rows are dense, and
    so is decoding.

    Fields:
        budget (2560): keys per row, verticals + slashes (SCBench, Llama-3.1-8B: 512 + 2,048).
        vertical_size (512): top vertical columns per head.
        last_q (64): last queries used to estimate the pattern.
        min_q_len (1024): prefills with fewer rows attend densely (e.g. follow-up questions).
        follow_ups ("dense"): "dense", an extend over a cached context attends densely (SCBench);
            "sparse", it is planned like the context's prefill.
    """

    FORCED_VERTICAL: ClassVar[int] = 30
    FORCED_SLASH: ClassVar[int] = 100
    MIN_VERTICAL: ClassVar[int] = 30
    MIN_SLASH: ClassVar[int] = 50

    budget: int = 2560
    vertical_size: int = 512
    last_q: int = 64
    min_q_len: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("vertical_size", lo=1)
        self._check_range("last_q", lo=1)
        self._check_range("min_q_len", lo=1)
        self._require(
            self.budget > self.vertical_size,
            f"budget ({self.budget}) must exceed vertical_size ({self.vertical_size}); "
            "the slash count is budget - vertical_size",
        )

    @property
    def slash_size(self) -> int:
        return self.budget - self.vertical_size

    def _plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int, num_layers: int) -> SparsePlan:
        q_len, kv_len, hkv = q.shape[0], k.shape[0], k.shape[1]
        if q_len < self.min_q_len:
            return SparsePlan.full(q_len, kv_len, hkv)
        w = min(self.last_q, q_len)
        probs = last_query_probs(q[-w:], k)  # [H, w, kv_len]
        vertical = probs.sum(dim=1)
        vertical[:, : self.FORCED_VERTICAL] = float("inf")
        n_v = min(kv_len, max(self.vertical_size, self.MIN_VERTICAL))
        slash = slash_scores(probs)
        slash[:, : self.FORCED_SLASH] = float("inf")
        n_s = min(kv_len, max(self.slash_size, self.MIN_SLASH))
        return SparsePlan(
            q_len,
            kv_len,
            hkv,
            vertical=vertical.topk(n_v, dim=-1).indices,
            slash=slash.topk(n_s, dim=-1).indices,
        )

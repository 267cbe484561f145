"""SnapKV: keep the keys the observation window attends to most, per head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kvmethods.base import DropMethod, last_query_probs
from kvmethods.registry import register


@register("snapkv")
@dataclass(frozen=True)
class SnapKV(DropMethod):
    """SnapKV, "SnapKV: LLM Knows What You are Looking for Before Generation"
    (https://arxiv.org/abs/2404.14469).

    The last `window` queries (the observation window) attend to the context (softmax over all keys,
    causal inside the window, averaged over each KV head's query group); their attention to the
    keys before the window is summed, smoothed with a 1-D pooling of `kernel_size`, and the top
    `budget - window` keys per KV head are kept together with the window's own keys: exactly
    `budget` keys per head. Query-aware when the window holds the question.

    Fields:
        budget (4096): keys kept per head, window included (SCBench capacity 4,096).
        heads ("query"): select per query head (SCBench: K/V repeated to every query head, Hq x
            budget kept) or "kv", once per KV head from group-averaged scores (kvpress).
        window (32): observation window (last queries, and last keys always kept).
        kernel_size (5): pooling kernel, odd.
        pooling ("avgpool"): "avgpool" or "maxpool".
    """

    budget: int = 4096
    window: int = 32
    kernel_size: int = 5
    pooling: str = "avgpool"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("window", lo=1)
        self._check_range("kernel_size", lo=1)
        self._require(self.kernel_size % 2 == 1, f"kernel_size must be odd, got {self.kernel_size}")
        self._require(
            self.pooling in ("avgpool", "maxpool"), f"pooling must be avgpool or maxpool, got {self.pooling!r}"
        )
        self._require(self.budget > self.window, f"budget ({self.budget}) must exceed window ({self.window})")

    def scores(self, q_window: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """float32 [H, kv_len - window]: pooled window attention to the keys before the window
        (H = query heads, or KV heads with heads="kv")."""
        w = min(self.window, q_window.shape[0])
        probs = last_query_probs(q_window[-w:], k, per_query_head=self.per_query_head)  # [H, w, kv_len]
        mass = probs[:, :, : k.shape[0] - self.window].sum(dim=1)
        pad = self.kernel_size // 2
        if self.pooling == "avgpool":
            return F.avg_pool1d(mass[:, None], self.kernel_size, stride=1, padding=pad)[:, 0]
        return F.max_pool1d(mass[:, None], self.kernel_size, stride=1, padding=pad)[:, 0]

    def _keep(self, q_window: torch.Tensor, k: torch.Tensor, n: int, *, layer: int, num_layers: int) -> torch.Tensor:
        scores = self.scores(q_window, k)
        keep = torch.zeros(scores.shape[0], k.shape[0], dtype=torch.bool)
        keep[:, k.shape[0] - self.window :] = True
        top = scores.topk(n - self.window, dim=-1).indices.cpu()
        keep.scatter_(1, top, True)
        return keep

"""SnapKV: keep the keys the observation window attends to most, per head."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kvmethods.base import DropMethod
from kvmethods.registry import register

POOLINGS = ("avgpool", "maxpool")


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, Hkv, L, D] -> [B, Hkv * n_rep, L, D], each KV head repeated for its query group
    (transformers' `repeat_kv`, which SCBench and kvpress call)."""
    b, hkv, length, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, hkv, n_rep, length, d).reshape(b, hkv * n_rep, length, d)


def window_attention(q_window: torch.Tensor, k: torch.Tensor, window: int) -> torch.Tensor:
    """Attention of the observation window over every key, computed as SCBench's SnapKVCluster
    computes it (minference/modules/snapkv.py, `update_kv`), so the same inputs select the same keys.

    q_window [rows, Hq, D]: the extend's queries, its last w = min(window, rows) rows the window;
    k [kv_len, Hkv, D]. In the queries' dtype: K repeated to every query head, logits
    q k^T / sqrt(D), the largest negative value of the dtype added above the diagonal of the last
    w x w block (causal inside the window), softmax in float32, cast back to the queries' dtype.
    Returns [1, Hq, w, kv_len] (HF layout, batch 1).
    """
    w = min(window, q_window.shape[0])
    hq, d = q_window.shape[1], q_window.shape[2]
    query = q_window[None].transpose(1, 2)[..., -w:, :]  # [1, Hq, w, D], the layout HF attention has
    keys = repeat_kv(k.to(q_window.dtype)[None].transpose(1, 2), hq // k.shape[1])
    weights = torch.matmul(query, keys.transpose(2, 3)) / math.sqrt(d)
    mask = torch.full((w, w), torch.finfo(weights.dtype).min, device=weights.device)
    cond = torch.arange(w, device=weights.device)
    mask.masked_fill_(cond < (cond + 1).view(w, 1), 0)
    weights[:, :, -w:, -w:] += mask[None, None]
    return torch.softmax(weights, dim=-1, dtype=torch.float32).to(q_window.dtype)


@register("snapkv")
@dataclass(frozen=True)
class SnapKV(DropMethod):
    """SnapKV, "SnapKV: LLM Knows What You are Looking for Before Generation"
    (https://arxiv.org/abs/2404.14469).

    At the context's prefill the last `window` queries (the observation window) attend to the whole
    context (`window_attention`: causal inside the window, softmax in float32 cast back to the
    model's dtype); their attention to the keys before the window is pooled (1-D, `kernel_size`,
    zero padding of kernel_size // 2 counted in the average) and the top `budget - window` keys are
    kept together with the window's own `window` keys: `budget` keys per head. A context of fewer
    than `budget` keys is kept whole (SCBench compresses from `q_len >= max_capacity_prompt` on;
    at equality it keeps everything too). Query-aware when the window holds the question.

    `heads` says what "per head" means with GQA:
    - "query" (SCBench, the default): K/V are repeated to every query head before compressing
      (kvcompression.py `BaseKVCache.update`), so each query head keeps its own `budget` keys
      (Hq x budget kept). The window's attention mass is summed over its rows, pooled, and the top
      `budget - window` taken per query head (torch.topk, so ties go as in SCBench's code).
    - "kv" (NVIDIA kvpress' SnapKVPress): one selection per KV head: the mass is averaged over the
      window's rows, pooled, averaged over the KV head's query group, the window padded with the
      highest score + 1 and the top `budget` taken (Hkv x budget kept).

    SCBench's settings (minference/models_patch.py): window_size 32, max_capacity_prompt 4,096,
    kernel_size 5, avgpool. kvpress' own defaults differ (window 64, no maxpool).

    Fields:
        budget (4096): keys kept per head, window included (SCBench's max_capacity_prompt).
        heads ("query"): "query" (SCBench) or "kv" (kvpress), see above.
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
        self._require(self.pooling in POOLINGS, f"pooling must be avgpool or maxpool, got {self.pooling!r}")
        self._require(self.budget > self.window, f"budget ({self.budget}) must exceed window ({self.window})")

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        pool = F.avg_pool1d if self.pooling == "avgpool" else F.max_pool1d
        return pool(x, kernel_size=self.kernel_size, padding=self.kernel_size // 2, stride=1)

    def scores(self, q_window: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """[H, kv_len - window] in the queries' dtype: the pooled window attention to the keys
        before the window (summed over the window's rows per query head; with heads="kv" averaged
        over the rows, pooled, then averaged over each KV head's query group)."""
        before = window_attention(q_window, k, self.window)[..., : k.shape[0] - self.window]
        if self.per_query_head:
            return self._pool(before.sum(dim=-2))[0]
        hkv = k.shape[1]
        pooled = self._pool(before.mean(dim=-2))  # [1, Hq, L]
        return pooled.view(1, hkv, pooled.shape[1] // hkv, pooled.shape[2]).mean(2)[0]

    def _keep(self, q_window: torch.Tensor, k: torch.Tensor, n: int, *, layer: int, num_layers: int) -> torch.Tensor:
        kv_len = k.shape[0]
        scores = self.scores(q_window, k)
        if self.per_query_head:
            top = scores.topk(n - self.window, dim=-1).indices
        else:  # kvpress pads the window with max + 1 and takes the top n over all keys
            padded = F.pad(scores, (0, self.window), value=scores.max().item() + 1)
            top = padded.topk(n, dim=-1).indices
        keep = torch.zeros(scores.shape[0], kv_len, dtype=torch.bool, device=k.device)
        keep[:, kv_len - self.window :] = True
        keep.scatter_(1, top, True)
        return keep

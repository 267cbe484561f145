"""Quest: query-aware page selection at decode from per-page key bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from kvmethods.base import KVMethod, check_qk
from kvmethods.plan import SparsePlan
from kvmethods.registry import register


def page_bounds(k: torch.Tensor, page_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k [kv_len, H, D] -> (kmin, kmax), each [ceil(kv_len / page_size), H, D]; the last page
    may be partial and covers only its own tokens."""
    n = k.shape[0]
    pad = math.ceil(n / page_size) * page_size - n
    x = k.float()
    if pad:
        x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])  # repeat the last key: bounds unchanged
    x = x.view(-1, page_size, *k.shape[1:])
    return x.amin(dim=1), x.amax(dim=1)


@register("quest")
@dataclass(frozen=True)
class Quest(KVMethod):
    """Quest, "Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference"
    (https://arxiv.org/abs/2406.10774).

    Keys are grouped in pages of `page_size`; each page keeps the per-channel min and max of its
    keys. At decode, page p scores sum_d max(q_d kmax[p, d], q_d kmin[p, d]) (an upper bound of
    q . k inside the page), summed over the query heads of a KV head; the current page (holding
    the newest token) plus the top `budget // page_size - 1` other pages are attended. Prefill, and
    the first `dense_layers` layers, are dense.

    Fields:
        budget (1024): token budget at decode (SCBench: 1,024).
        page_size (16): tokens per page (Quest's chunk size).
        dense_layers (2): the first layers attend densely (as in Quest's evaluation).
    """

    family: ClassVar[str] = "kv_retrieval"
    phases: ClassVar[frozenset[str]] = frozenset({"decode"})
    stateful: ClassVar[bool] = True

    budget: int = 1024
    page_size: int = 16
    dense_layers: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("page_size", lo=1)
        self._check_range("dense_layers", lo=0)
        self._require(
            self.budget >= self.page_size, f"budget ({self.budget}) must be >= page_size ({self.page_size})"
        )

    @property
    def num_pages(self) -> int:
        return self.budget // self.page_size

    def page_bounds(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return page_bounds(k, self.page_size)

    @staticmethod
    def page_scores(q: torch.Tensor, page_kmin: torch.Tensor, page_kmax: torch.Tensor) -> torch.Tensor:
        """q [Hq, D] (or [1, Hq, D]); bounds [P, Hkv, D] -> float32 [Hkv, P]."""
        q = q.reshape(-1, q.shape[-1]).float()
        hq, d = q.shape
        hkv = page_kmin.shape[1]
        if hq % hkv or page_kmin.shape != page_kmax.shape or page_kmin.shape[-1] != d:
            raise ValueError(
                f"select_pages: q {tuple(q.shape)} and page bounds {tuple(page_kmin.shape)} / "
                f"{tuple(page_kmax.shape)} need matching head_dim and num_q_heads divisible by num_kv_heads"
            )
        qg = q.view(hkv, hq // hkv, 1, d)
        lo = page_kmin.float().permute(1, 0, 2)[:, None]  # [H, 1, P, D]
        hi = page_kmax.float().permute(1, 0, 2)[:, None]
        return torch.maximum(qg * hi, qg * lo).sum(dim=-1).sum(dim=1)

    def select_pages(
        self, q: torch.Tensor, page_kmin: torch.Tensor, page_kmax: torch.Tensor, *, seq_len: int
    ) -> torch.Tensor:
        """bool [Hkv, num_pages]: the pages the decode query attends to (current page included)."""
        total = page_kmin.shape[0]
        pages = math.ceil(seq_len / self.page_size)
        if not 1 <= pages <= total:
            raise ValueError(f"seq_len {seq_len} needs {pages} pages of {self.page_size}, bounds have {total}")
        scores = self.page_scores(q, page_kmin, page_kmax)[:, :pages].cpu()
        keep = torch.zeros(scores.shape[0], total, dtype=torch.bool)
        if pages <= self.num_pages:
            keep[:, :pages] = True
            return keep
        scores[:, pages - 1] = float("inf")
        keep.scatter_(1, scores.topk(self.num_pages, dim=-1).indices, True)
        return keep

    def decode_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        q_len, _, _, kv_len, hkv = check_qk(q, k)
        plan = SparsePlan.full(q_len, kv_len, hkv)
        if q_len != 1 or layer < self.dense_layers or kv_len <= self.num_pages * self.page_size:
            return plan
        kmin, kmax = self.page_bounds(k)
        pages = self.select_pages(q[0], kmin, kmax, seq_len=kv_len)
        return plan.with_visibility(pages.repeat_interleave(self.page_size, dim=1)[:, :kv_len])

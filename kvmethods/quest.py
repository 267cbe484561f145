"""Quest: query-aware chunk (page) selection from per-chunk key bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from kvmethods.base import HeadSelection, KVMethod, check_qk, is_context_prefill
from kvmethods.plan import SparsePlan
from kvmethods.registry import register

VARIANTS = ("scbench", "library")
LIBRARY_DENSE_LAYERS = 2  # Quest's evaluation skips the first two layers


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
class Quest(HeadSelection, KVMethod):
    """Quest, "Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference"
    (https://arxiv.org/abs/2406.10774).

    Keys are grouped in chunks (pages) of `page_size`; a chunk's score bounds q . k inside it from
    its per-channel key minimum and maximum.

    variant "scbench" (SCBench's port, microsoft/MInference `quest_decode_kernel`): every forward
    after the context's prefill is selected, in every layer: each decode step and each row of a
    follow-up extend (a later turn or question) attends the top min(max(3, min(kv_len, budget) //
    page_size), chunks) chunks of its own, causally, per query head (K repeated). The chunk score of
    row r is sum_d q[r, d] S_d max_{t in chunk} (k[t, d] S_d) with S the sign of q (+1 for q > 0,
    else -1), and for a multi-row forward S the sum of the rows' signs, as the reference computes
    it. Selection ignores causality (a row may pick chunks after itself, which it then cannot see);
    the current chunk is not forced. The context's prefill is dense.

    variant "library" (the Quest library, mit-han-lab/Quest): decode only, the first two layers
    dense, the current chunk always attended plus the top budget // page_size - 1 others by
    sum_d max(q_d kmax_d, q_d kmin_d), and contexts of at most budget // page_size chunks dense.

    Fields:
        budget (1024): token budget (SCBench: 1,024).
        page_size (16): tokens per chunk (Quest's chunk size).
        variant ("scbench"): "scbench" or "library", as above.
        dense_layers (-1): the first layers attend densely; -1 = the variant's rule (scbench: none,
            library: 2).
        heads ("query"): "query", one selection per query head (SCBench); "kv", one per KV head
            from the scores summed over its query group.
    """

    family: ClassVar[str] = "kv_retrieval"
    phases: ClassVar[frozenset[str]] = frozenset({"decode"})  # scbench: follow-up extends too
    stateful: ClassVar[bool] = True
    MIN_CHUNKS: ClassVar[int] = 3

    budget: int = 1024
    page_size: int = 16
    variant: str = "scbench"
    dense_layers: int = -1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("page_size", lo=1)
        self._check_range("dense_layers", lo=-1)
        self._require(self.variant in VARIANTS, f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        self._require(
            self.budget >= self.page_size, f"budget ({self.budget}) must be >= page_size ({self.page_size})"
        )

    @property
    def num_pages(self) -> int:
        return self.budget // self.page_size

    @property
    def first_sparse_layer(self) -> int:
        if self.dense_layers >= 0:
            return self.dense_layers
        return LIBRARY_DENSE_LAYERS if self.variant == "library" else 0

    def page_bounds(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return page_bounds(k, self.page_size)

    # -- hooks -----------------------------------------------------------------------------------

    def prefill_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        q_len, _, _, kv_len, hkv = check_qk(q, k)
        dense = self.variant == "library" or q_len == 0 or is_context_prefill(q_len, kv_len)
        if dense or layer < self.first_sparse_layer:
            return SparsePlan.full(q_len, kv_len, hkv)
        return self._chunk_plan(q, k)

    def decode_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        q_len, _, _, kv_len, hkv = check_qk(q, k)
        if layer < self.first_sparse_layer or q_len == 0:
            return SparsePlan.full(q_len, kv_len, hkv)
        if self.variant == "scbench":
            return self._chunk_plan(q, k)
        if q_len != 1 or kv_len <= self.num_pages * self.page_size:
            return SparsePlan.full(q_len, kv_len, hkv)
        kmin, kmax = self.page_bounds(k)
        scores = self.page_scores(q[0], kmin, kmax, per_query_head=self.per_query_head)
        pages = self._top_pages_with_current(scores, math.ceil(kv_len / self.page_size))
        return self._plan(pages[:, None], kv_len)

    # -- SCBench's selection ---------------------------------------------------------------------

    def chunk_scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """float32 [H, q_len, chunks]: SCBench's chunk score of every row (H = selection heads)."""
        q_len, hq, d = q.shape
        hkv = k.shape[1]
        qf = q.float()
        sign = torch.where(qf > 0, 1.0, -1.0)
        s = sign.sum(dim=0) if q_len > 1 else sign[0]  # [Hq, D]
        kmin, kmax = (b.repeat_interleave(hq // hkv, dim=1) for b in self.page_bounds(k))  # [P, Hq, D]
        # max over a chunk of k * s: s kmax where s > 0, s kmin where s < 0 (0 where s = 0)
        chunk_max = torch.where(s > 0, kmax * s, kmin * s)
        scores = torch.einsum("nhd,phd->hnp", qf * s, chunk_max)
        if self.per_query_head:
            return scores
        return scores.view(hkv, hq // hkv, q_len, -1).sum(dim=1)

    def _chunk_plan(self, q: torch.Tensor, k: torch.Tensor) -> SparsePlan:
        kv_len = k.shape[0]
        scores = self.chunk_scores(q, k).cpu()
        chunks = scores.shape[-1]
        top = min(max(self.MIN_CHUNKS, min(kv_len, self.budget) // self.page_size), chunks)
        chosen = torch.zeros_like(scores, dtype=torch.bool)
        chosen.scatter_(2, scores.topk(top, dim=-1).indices, True)
        return self._plan(chosen, kv_len)

    def _plan(self, chosen: torch.Tensor, kv_len: int) -> SparsePlan:
        """chosen: bool [H, q_len, chunks] -> a plan whose rows see their chunks (causally)."""
        heads, q_len, _ = chosen.shape
        return SparsePlan(
            q_len, kv_len, heads, block_mask=chosen, block_size=self.page_size, query_block_size=1
        )

    # -- the Quest library's selection -----------------------------------------------------------

    @staticmethod
    def page_scores(
        q: torch.Tensor, page_kmin: torch.Tensor, page_kmax: torch.Tensor, *, per_query_head: bool = False
    ) -> torch.Tensor:
        """q [Hq, D] (or [1, Hq, D]); bounds [P, Hkv, D] -> float32 [Hq, P] per query head, else
        [Hkv, P] summed over each KV head's query group: sum_d max(q_d kmax_d, q_d kmin_d)."""
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
        scores = torch.maximum(qg * hi, qg * lo).sum(dim=-1)  # [Hkv, G, P]
        return scores.reshape(hq, -1) if per_query_head else scores.sum(dim=1)

    def select_pages(
        self, q: torch.Tensor, page_kmin: torch.Tensor, page_kmax: torch.Tensor, *, seq_len: int
    ) -> torch.Tensor:
        """The library's choice per KV head: bool [Hkv, num_pages], the current page included."""
        total = page_kmin.shape[0]
        pages = math.ceil(seq_len / self.page_size)
        if not 1 <= pages <= total:
            raise ValueError(f"seq_len {seq_len} needs {pages} pages of {self.page_size}, bounds have {total}")
        keep = torch.zeros(page_kmin.shape[1], total, dtype=torch.bool)
        keep[:, :pages] = self._top_pages_with_current(self.page_scores(q, page_kmin, page_kmax)[:, :pages], pages)
        return keep

    def _top_pages_with_current(self, scores: torch.Tensor, pages: int) -> torch.Tensor:
        """bool [H, pages]: the last (current) page and the top num_pages - 1 others."""
        scores = scores[:, :pages].cpu().clone()
        keep = torch.zeros(scores.shape[0], pages, dtype=torch.bool)
        if pages <= self.num_pages:
            keep[:] = True
            return keep
        scores[:, pages - 1] = float("inf")
        keep.scatter_(1, scores.topk(self.num_pages, dim=-1).indices, True)
        return keep

"""FlexPrefill: query-aware / vertical-slash block selection per head, sized by attention coverage."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from kvmethods.base import HeadSelection, KVMethod, SparsePrefillMethod, last_query_probs, slash_scores
from kvmethods.plan import SparsePlan
from kvmethods.registry import register


def cover_count(scores: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per row, how many of the largest entries it takes for their sum to pass `gamma` (the
    reference's `score_cover_topk`: one more than the entries whose running sum stays <= gamma)."""
    csum = scores.sort(dim=-1, descending=True).values.cumsum(dim=-1)
    return (csum <= gamma).sum(dim=-1) + 1


def block_sum(x: torch.Tensor, bs: int) -> torch.Tensor:
    """Sum over consecutive blocks of `bs` along the last dim (the last block may be partial)."""
    n = x.shape[-1]
    pad = math.ceil(n / bs) * bs - n
    return torch.nn.functional.pad(x, (0, pad)).view(*x.shape[:-1], -1, bs).sum(-1)


def block_mean(x: torch.Tensor, bs: int) -> torch.Tensor:
    """Mean over consecutive blocks of `bs` rows (dim 0) of x [n, H, D] -> [ceil(n / bs), H, D]."""
    n = x.shape[0]
    pad = math.ceil(n / bs) * bs - n
    sums = torch.nn.functional.pad(x.float(), (0, 0, 0, 0, 0, pad)).view(-1, bs, *x.shape[1:]).sum(1)
    counts = torch.full((sums.shape[0],), float(bs), device=x.device)
    counts[-1] = n - (sums.shape[0] - 1) * bs
    return sums / counts[:, None, None]


def sqrt_js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """sqrt(JSD(p || q)) along the last dim (natural log), computed as the reference does: an
    entry of 0 gives NaN (0 log 0), and NaN is never below tau."""
    m = (p + q) / 2
    return torch.sqrt(0.5 * (p * torch.log(p / m)).sum(-1) + 0.5 * (q * torch.log(q / m)).sum(-1))


@register("flexprefill")
@dataclass(frozen=True)
class FlexPrefill(HeadSelection, SparsePrefillMethod):
    """FlexPrefill, "FlexPrefill: A Context-Aware Sparse Attention Mechanism for Efficient
    Long-Sequence Inference" (https://arxiv.org/abs/2502.20766), ICLR 2025, as SCBench runs it
    (microsoft/MInference minference/modules/flexprefill.py, `get_active_blocks`).

    Per query head (K repeated to every query head, as SCBench does), on blocks of `block_size`:
    1. the last `block_size` queries attend to all keys (causal among themselves); from them the
       per-token vertical (column mean) and slash (diagonal mean) attention, and an estimate
       softmax(mean(q_last) . mean-pooled K) over the key blocks;
    2. pattern choice: the head is query-aware if sqrt(JSD(estimate, block-summed vertical)) < tau,
       otherwise vertical-slash;
    3. vertical-slash heads keep the top key blocks by vertical mass and the top diagonal blocks
       by slash mass, each as many as (tokens covering `gamma` of the mass) // 128 + 1 (128 even
       for other block sizes, as the reference), clamped to [budget, max_budget] in blocks;
       query-aware heads keep ceil(budget / block_size) of each;
    4. query-aware heads add, from the pooled attention of every query block over the key blocks
       (causal), the largest entries whose running sum stays within gamma x (number of blocks);
    5. the first key block and the diagonal block are always kept.
    Diagonal block s maps query block r to key block r - s; its score pools the per-offset slash
    mass in blocks counted from the largest offset (as the reference's pooling does, so the blocks
    are offsets (s - 1) bs + r .. s bs + r - 1 with r = kv_len mod bs when that is not 0). A query
    block whose rows span key blocks lo..hi (a cached prefix not on a block edge) takes lo - s..hi
    - s. Prefills of at most max(2 block_size, budget rounded up to blocks) rows are dense, and so
    is decoding.

    Fields:
        budget (1): minimum tokens of vertical and of slash blocks per head (min_budget; SCBench
            None, which the reference takes as 1: one block).
        gamma (0.9): attention coverage in (0, 1].
        tau (0.1): threshold on sqrt(JSD) for the query-aware pattern (0 disables it).
        block_size (128): block edge for queries and keys.
        max_budget (0): maximum tokens of vertical and of slash blocks per head (0 = no limit, SCBench).
        heads ("query"): "query", one selection per query head (SCBench); "kv", one per KV head
            from the attention averaged over its query group.
        follow_ups ("dense"): "dense", an extend over a cached context attends densely (SCBench);
            "sparse", it is planned like the context's prefill.
    """

    COVER_DIVISOR: ClassVar[int] = 128  # the reference divides the covering token count by 128

    budget: int = 1
    gamma: float = 0.9
    tau: float = 0.1
    block_size: int = 128
    max_budget: int = 0

    state_heads = KVMethod.state_heads  # stateless: nothing is kept per slot

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require(0.0 < self.gamma <= 1.0, f"gamma must be in (0, 1], got {self.gamma}")
        self._check_range("tau", lo=0.0, hi=1.0)
        self._check_range("block_size", lo=1)
        self._check_range("max_budget", lo=0)
        self._require(
            self.max_budget == 0 or self.max_budget >= self.budget,
            f"max_budget ({self.max_budget}) must be 0 (no limit) or >= budget ({self.budget})",
        )

    def _plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int, num_layers: int) -> SparsePlan:
        q_len, hq, d = q.shape
        kv_len, hkv = k.shape[0], k.shape[1]
        bs = self.block_size
        if q_len <= max(2 * bs, math.ceil(self.budget / bs) * bs):
            return SparsePlan.full(q_len, kv_len, hkv)
        heads = self.selection_heads(hq, hkv)
        nqb, nkb, off = math.ceil(q_len / bs), math.ceil(kv_len / bs), kv_len - q_len
        max_blocks = min(nkb, math.ceil(self.max_budget / bs)) if self.max_budget else nkb
        min_blocks = math.ceil(self.budget / bs)
        scale = 1.0 / math.sqrt(d)

        w = min(bs, q_len)
        probs = last_query_probs(q[-w:], k, scale, per_query_head=self.per_query_head)  # [H, w, kv_len]
        vert_tok = probs.mean(dim=1).cpu()
        slash_tok = slash_scores(probs).flip(-1).cpu() / w  # index kv_len - 1 - offset, as the reference
        n_v = (cover_count(vert_tok, self.gamma) // self.COVER_DIVISOR + 1).clamp(min_blocks, max_blocks)
        n_s = (cover_count(slash_tok, self.gamma) // self.COVER_DIVISOR + 1).clamp(min_blocks, max_blocks)
        vert_blk, slash_blk = block_sum(vert_tok, bs), block_sum(slash_tok, bs)

        k_blk = block_mean(k, bs).cpu()  # [nkb, Hkv, D]
        g = hq // hkv
        q_last = q[-w:].float().mean(dim=0).cpu().view(hkv, g, d) * scale
        estimate = torch.softmax(torch.einsum("hgd,nhd->hgn", q_last, k_blk), dim=-1)
        estimate = estimate.reshape(hq, nkb) if self.per_query_head else estimate.mean(dim=1)
        query_aware = sqrt_js_divergence(estimate, vert_blk) < self.tau
        n_v[query_aware] = min_blocks
        n_s[query_aware] = min_blocks
        vert_blk[:, 0] = float("inf")
        slash_blk[:, -1] = float("inf")  # the blocks of the smallest offsets: the diagonal

        rows_first = torch.arange(nqb) * bs
        rows_last = torch.clamp(rows_first + bs, max=q_len) - 1
        lo, hi = (off + rows_first) // bs, (off + rows_last) // bs  # key blocks of each query block
        mask = torch.zeros(heads, nqb, nkb, dtype=torch.bool)
        qb = torch.arange(nqb)
        for h in range(heads):
            mask[h, :, vert_blk[h].topk(int(n_v[h])).indices] = True
            s = (nkb - 1) - slash_blk[h].topk(int(n_s[h])).indices
            for edge in (lo, hi):
                kb = edge[None, :] - s[:, None]  # [n_s, nqb]
                ok = kb >= 0
                mask[h, qb.expand_as(kb)[ok], kb[ok]] = True
        if bool(query_aware.any()):
            mask |= self._query_aware_blocks(q, k_blk, hi, query_aware, scale)
        mask &= torch.arange(nkb)[None, None, :] <= hi[None, :, None]
        return SparsePlan(q_len, kv_len, heads, block_mask=mask, block_size=bs)

    def _query_aware_blocks(
        self, q: torch.Tensor, k_blk: torch.Tensor, hi: torch.Tensor, flagged: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """bool [H, nqb, nkb]: the pooled-attention blocks covering gamma, for the flagged heads."""
        hq, d = q.shape[1], q.shape[2]
        nkb, hkv = k_blk.shape[0], k_blk.shape[1]
        g = hq // hkv
        q_blk = block_mean(q, self.block_size).cpu() * scale  # [nqb, Hq, D]
        nqb = q_blk.shape[0]
        logits = torch.einsum("nhgd,mhd->hgnm", q_blk.view(nqb, hkv, g, d), k_blk)
        logits.masked_fill_(torch.arange(nkb)[None, :] > hi[:, None], float("-inf"))
        attn = torch.softmax(logits, dim=-1)
        attn = attn.reshape(hq, -1) if self.per_query_head else attn.mean(dim=1).reshape(hkv, -1)
        values, order = attn.sort(dim=-1, descending=True)
        chosen = values.cumsum(dim=-1) <= self.gamma * nqb
        out = torch.zeros_like(chosen)
        out.scatter_(1, order, chosen)
        out &= flagged[:, None]
        return out.view(-1, nqb, nkb)

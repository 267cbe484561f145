"""Exact top-k attention: the oracle every top-k sparse method is measured against."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from kvmethods.base import FOLLOW_UPS, HeadSelection, KVMethod, check_qk, is_context_prefill
from kvmethods.plan import SparsePlan
from kvmethods.registry import register


def exact_scores(q: torch.Tensor, k: torch.Tensor, *, per_query_head: bool = True) -> torch.Tensor:
    """float32 [H, q_len, kv_len]: q . k of every row and key, causal (-inf above the diagonal,
    rows at the bottom-right-aligned positions kv_len - q_len + i). H = query heads; with
    `per_query_head=False` the softmax probabilities averaged over each KV head's query group
    (H = KV heads), the group's common choice."""
    q_len, hq, d = q.shape
    kv_len, hkv, _ = k.shape
    g = hq // hkv
    qh = q.float().view(q_len, hkv, g, d).permute(1, 2, 0, 3).reshape(hkv, g * q_len, d)
    logits = torch.bmm(qh, k.float().permute(1, 2, 0)).view(hkv * g, q_len, kv_len)
    pos = kv_len - q_len + torch.arange(q_len, device=q.device)
    future = torch.arange(kv_len, device=q.device)[None, :] > pos[:, None]
    logits.masked_fill_(future, float("-inf"))
    if per_query_head:
        return logits
    probs = torch.softmax(logits / math.sqrt(d), dim=-1)
    return probs.view(hkv, g, q_len, kv_len).mean(dim=1)


@register("topk")
@dataclass(frozen=True)
class TopK(HeadSelection, KVMethod):
    """Exact top-k attention (oracle): each query head attends the `budget` keys with the highest
    exact scores q . k over its whole causal range, at every decode step. No approximation and no
    eviction, so it is the upper bound of any top-k sparse method at the same budget (RocketKV's
    "Exact-TopK" baseline, https://arxiv.org/abs/2502.14051, NVlabs/RocketKV
    `pipeline/inf_stream_llm/inf_llm/attention/topk.py`, run there with `topk = token_budget`).

    The context's prefill is dense. Follow-up extends (a later turn, every question over a shared
    context) are dense too by default: RocketKV's oracle runs every forward of more than one token
    as a prefill (dense attention, `fattn`), and only single-token steps select. `follow_ups="sparse"`
    selects per row on those extends as well (each row its own top `budget` of its causal keys), as
    SCBench's Quest port does on every forward after the context's prefill.

    With `budget` >= the sequence's length every key is attended: dense attention.

    Fields:
        budget (1024): keys each query head attends per step (SCBench's sparse-decode budget).
        heads ("query"): "query", one top-k per query head (the reference: K repeated to every
            query head); "kv", one per KV head from the softmax probabilities averaged over its
            query group.
        follow_ups ("dense"): "dense" or "sparse", as above.
    """

    family: ClassVar[str] = "kv_retrieval"
    phases: ClassVar[frozenset[str]] = frozenset({"decode"})  # follow_ups="sparse": extends too
    stateful: ClassVar[bool] = False

    budget: int = 1024
    follow_ups: str = "dense"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require(
            self.follow_ups in FOLLOW_UPS, f"follow_ups must be one of {', '.join(FOLLOW_UPS)}, got {self.follow_ups!r}"
        )

    def selected(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """bool [H, q_len, kv_len]: the keys each row attends (its top min(budget, causal keys))."""
        q_len, _, _, kv_len, _ = check_qk(q, k)
        scores = exact_scores(q, k, per_query_head=self.per_query_head)
        chosen = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        chosen.scatter_(2, scores.topk(min(self.budget, kv_len), dim=-1).indices, True)
        pos = kv_len - q_len + torch.arange(q_len, device=q.device)
        causal = torch.arange(kv_len, device=q.device)[None, :] <= pos[:, None]
        return chosen & causal  # an extend's early rows have fewer causal keys than the budget

    def prefill_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        q_len, _, _, kv_len, hkv = check_qk(q, k)
        if q_len == 0 or self.follow_ups == "dense" or is_context_prefill(q_len, kv_len):
            return SparsePlan.full(q_len, kv_len, hkv)
        return self._plan(q, k)

    def decode_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        q_len, _, _, kv_len, hkv = check_qk(q, k)
        if q_len == 0 or self.budget >= kv_len:
            return SparsePlan.full(q_len, kv_len, hkv)
        return self._plan(q, k)

    def _plan(self, q: torch.Tensor, k: torch.Tensor) -> SparsePlan:
        if q.shape[0] == 1:  # a decode step over more than `budget` keys: its top keys as columns
            top = exact_scores(q, k, per_query_head=self.per_query_head)[:, 0].topk(self.budget, dim=-1)
            return SparsePlan(1, k.shape[0], top.indices.shape[0], vertical=top.indices)
        # several rows (a sparse follow-up extend): a per-row, per-key block mask
        chosen = self.selected(q, k)
        heads, q_len, kv_len = chosen.shape
        return SparsePlan(q_len, kv_len, heads, block_mask=chosen, block_size=1, query_block_size=1)

"""MInference: per-head vertical-slash sparse prefill, estimated online from the last queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from kvmethods.base import HeadSelection, KVMethod, SparsePrefillMethod, last_query_probs, slash_scores
from kvmethods.plan import SparsePlan
from kvmethods.registry import register

SLASH_MODES = ("kernel", "exact")


@register("minference")
@dataclass(frozen=True)
class MInference(HeadSelection, SparsePrefillMethod):
    """MInference 1.0: "Accelerating Pre-filling for Long-Context LLMs via Dynamic Sparse
    Attention" (https://arxiv.org/abs/2407.02490), vertical-slash pattern, as SCBench runs it
    (microsoft/MInference `minference_prefill_kernel` / `gather_last_q_vertical_slash_topk_vllm`).

    Per query head (K repeated to every query head, as SCBench does), the softmax attention of the
    last `last_q` queries scores every key column (vertical: summed over those rows) and every
    diagonal offset (slash: summed along it). The top `vertical_size` columns and the top
    `budget - vertical_size` diagonals are kept; the first 30 columns and the nearest 100 diagonals
    always are, and the sizes are at least 30 verticals and 50 slashes (at most the key count).
    With slash_mode "kernel" the selection is attended as MInference's kernel does
    (`convert_vertical_slash_indexes`): rows in blocks of 64, each selected diagonal a band of 64
    keys per block, overlapping bands merged in steps of 64, verticals below the block's last band
    end (`SparsePlan.slash_band`). A one-row prefill is dense, and so is decoding.

    SCBench's sizes come from a per-model pattern file; for Llama-3.1-8B-Instruct every head is
    vertical_and_slash 512 + 2,048, the defaults here, used for every model. (SCBench itself refuses
    a model without a pattern file, and gives a head missing from one 1,000 + 6,096.)

    Fields:
        budget (2560): keys per row, verticals + slashes (SCBench, Llama-3.1-8B: 512 + 2,048).
        vertical_size (512): top vertical columns per head.
        last_q (64): last queries used to estimate the pattern.
        min_q_len (1): prefills with fewer rows attend densely (SCBench has no such rule).
        slash_mode ("kernel"): "kernel", 64-key bands per 64-row block as MInference's kernel
            attends them (SCBench); "exact", each row sees exactly the selected diagonals.
        heads ("query"): "query", one pattern per query head (SCBench); "kv", one per KV head
            from the attention averaged over its query group.
        follow_ups ("dense"): "dense", an extend over a cached context attends densely (SCBench);
            "sparse", it is planned like the context's prefill.
    """

    FORCED_VERTICAL: ClassVar[int] = 30
    FORCED_SLASH: ClassVar[int] = 100
    MIN_VERTICAL: ClassVar[int] = 30
    MIN_SLASH: ClassVar[int] = 50
    KERNEL_BLOCK: ClassVar[int] = 64  # convert_vertical_slash_indexes' BLOCK_SIZE_M = BLOCK_SIZE_N

    budget: int = 2560
    vertical_size: int = 512
    last_q: int = 64
    min_q_len: int = 1
    slash_mode: str = "kernel"

    state_heads = KVMethod.state_heads  # stateless: nothing is kept per slot

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("vertical_size", lo=1)
        self._check_range("last_q", lo=1)
        self._check_range("min_q_len", lo=1)
        self._require(
            self.slash_mode in SLASH_MODES,
            f"slash_mode must be one of {', '.join(SLASH_MODES)}, got {self.slash_mode!r}",
        )
        self._require(
            self.budget > self.vertical_size,
            f"budget ({self.budget}) must exceed vertical_size ({self.vertical_size}); "
            "the slash count is budget - vertical_size",
        )

    @property
    def slash_size(self) -> int:
        return self.budget - self.vertical_size

    def _plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int, num_layers: int) -> SparsePlan:
        q_len, hq, kv_len, hkv = q.shape[0], q.shape[1], k.shape[0], k.shape[1]
        if q_len < max(self.min_q_len, 2):
            return SparsePlan.full(q_len, kv_len, hkv)
        heads = self.selection_heads(hq, hkv)
        w = min(self.last_q, q_len)
        probs = last_query_probs(q[-w:], k, per_query_head=self.per_query_head)  # [H, w, kv_len]
        vertical = probs.sum(dim=1)
        vertical[:, : self.FORCED_VERTICAL] = float("inf")
        n_v = min(kv_len, max(self.vertical_size, self.MIN_VERTICAL))
        # Diagonals in the reference's order (index kv_len - 1 - offset), so ties break alike.
        slash = slash_scores(probs).flip(-1)
        slash[:, -self.FORCED_SLASH :] = float("inf")
        n_s = min(kv_len, max(self.slash_size, self.MIN_SLASH))
        return SparsePlan(
            q_len,
            kv_len,
            heads,
            vertical=vertical.topk(n_v, dim=-1).indices,
            slash=(kv_len - 1) - slash.topk(n_s, dim=-1).indices,
            slash_band=self.KERNEL_BLOCK if self.slash_mode == "kernel" else 0,
        )

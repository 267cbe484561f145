"""Tri-shape: A-shape plus dense attention for the last query rows (the question)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from kvmethods.a_shape import AShape
from kvmethods.plan import SparsePlan
from kvmethods.registry import register


@register("tri_shape")
@dataclass(frozen=True)
class TriShape(AShape):
    """Tri-shape sparse prefill, from "SCBench: A KV Cache-Centric Analysis of Long-Context
    Methods" (https://arxiv.org/abs/2412.10319): A-shape for the prompt, the last `last_q` rows dense.

    The dense rows are the last rows of each prefill call (the whole prompt when it is prefilled in
    one extend; a short follow-up question is entirely dense). SCBench's `tri_shape_kernel` caps
    them at q_len - 1, which attends the same keys (a fresh prefill's first row sees only key 0).
    Decoding is dense.

    Fields:
        budget (4096): keys per row outside the dense rows, sink + local window.
        sink (128): attention-sink keys.
        last_q (100): the last query rows that attend densely.
        follow_ups ("dense"): "dense", an extend over a cached context attends densely (SCBench);
            "sparse", it is planned like the context's prefill.
    """

    last_q: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("last_q", lo=0)

    def _plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int, num_layers: int) -> SparsePlan:
        return dataclasses.replace(super()._plan(q, k, layer=layer, num_layers=num_layers), dense_rows=self.last_q)

"""A-shape: attention sinks plus a local window for every prefill row (StreamingLLM's pattern)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kvmethods.base import SparsePrefillMethod
from kvmethods.plan import SparsePlan
from kvmethods.registry import register


@register("a_shape")
@dataclass(frozen=True)
class AShape(SparsePrefillMethod):
    """A-shape sparse prefill, the static pattern of "Efficient Streaming Language Models with
    Attention Sinks" (https://arxiv.org/abs/2309.17453), as a prefill pattern in MInference
    (https://arxiv.org/abs/2407.02490) and SCBench (https://arxiv.org/abs/2412.10319).

    Each prefill row sees the first `sink` keys and the `budget - sink` keys ending at itself, as
    SCBench's `a_shape_kernel` (n_init 128, n_local 3,968 per row) attends. Decoding is dense.

    Fields:
        budget (4096): keys per row, sink + local window (SCBench: 128 + 3,968).
        sink (128): attention-sink keys at the start of the sequence.
        follow_ups ("dense"): "dense", an extend over a cached context attends densely (SCBench);
            "sparse", it is planned like the context's prefill.
    """

    budget: int = 4096
    sink: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("sink", lo=0)
        self._require(self.budget > self.sink, f"budget ({self.budget}) must exceed sink ({self.sink})")

    @property
    def window(self) -> int:
        return self.budget - self.sink

    def _plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int, num_layers: int) -> SparsePlan:
        return SparsePlan(q.shape[0], k.shape[0], k.shape[1], sink=self.sink, window=self.window)

"""PyramidKV: SnapKV scoring with per-layer budgets shrinking linearly with depth."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kvmethods.registry import register
from kvmethods.snapkv import SnapKV


def pyramid_budgets(budget: int, window: int, num_layers: int, kv_len: int, beta: int) -> list[int]:
    """Keys kept per head in each layer: linear from the first to the last layer, average `budget`.

    The selectable part (budget - window) goes from max_n in layer 0 down to min_n in the last
    layer, with min_n = (budget - window) / beta and max_n = 2 (budget - window) - min_n; when max_n
    exceeds the selectable context it is capped there and min_n raised to keep the average. Integer
    rounding keeps the sum exact (largest remainders), so the mean over layers is `budget`.
    """
    base, avail = budget - window, kv_len - window
    if num_layers <= 1 or base >= avail:
        return [min(budget, kv_len)] * max(num_layers, 1)
    min_n = base / beta
    max_n = 2 * base - min_n
    if max_n > avail:
        max_n = avail
        min_n = 2 * base - max_n
    step = (max_n - min_n) / (num_layers - 1)
    exact = [max_n - layer * step for layer in range(num_layers)]
    ints = [math.floor(x) for x in exact]
    short = base * num_layers - sum(ints)
    order = sorted(range(num_layers), key=lambda i: (-(exact[i] - ints[i]), i))
    for i in order[:short]:
        ints[i] += 1
    return [n + window for n in ints]


@register("pyramidkv")
@dataclass(frozen=True)
class PyramidKV(SnapKV):
    """PyramidKV, "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information
    Funneling" (https://arxiv.org/abs/2406.02069).

    SnapKV's scoring and selection, but layer l keeps `pyramid_budgets(...)[l]` keys per head:
    more in lower layers, fewer in higher ones, averaging `budget` over the layers.

    Fields:
        budget (4096): average keys kept per head over the layers, window included.
        heads ("query"): select per query head (SCBench: K/V repeated to every query head, Hq x
            budget kept) or "kv", once per KV head from group-averaged scores (kvpress).
        window (32): observation window.
        kernel_size (5): pooling kernel, odd.
        pooling ("avgpool"): "avgpool" or "maxpool".
        beta (20): pyramid steepness; the last layer keeps (budget - window) / beta + window.
    """

    beta: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("beta", lo=1)

    def layer_budget(self, layer: int, num_layers: int, kv_len: int) -> int:
        return pyramid_budgets(self.budget, self.window, num_layers, kv_len, self.beta)[layer]

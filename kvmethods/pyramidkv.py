"""PyramidKV: SnapKV scoring with per-layer budgets shrinking linearly with depth."""

from __future__ import annotations

from dataclasses import dataclass

from kvmethods.registry import register
from kvmethods.snapkv import SnapKV


def pyramid_budgets(budget: int, window: int, num_layers: int, kv_len: int, beta: int) -> list[int]:
    """Keys kept per head in each layer for a context of kv_len keys, window included, as SCBench's
    PyramidKVCluster.update_kv decides (minference/modules/pyramidkv.py, the same as
    KVCache-Factory's per-query-head path):

    - kv_len < budget: nothing dropped (kv_len per layer);
    - budget <= kv_len < 2 (budget - window): uniform SnapKV, `budget` in every layer;
    - else, in integers: min_num = (budget - window) // beta, max_num = 2 (budget - window) - min_num;
      if max_num >= kv_len - window, max_num = kv_len - window and min_num = 2 (budget - window) -
      max_num; steps = (max_num - min_num) // (num_layers - 1); layer l keeps max_num - l * steps
      keys before the window, plus the window. The floor steps make the mean over the layers at
      least `budget` (not exactly it).

    With one layer (SCBench divides by zero there) the layer keeps `budget`.
    """
    num_layers = max(num_layers, 1)
    if kv_len < budget:
        return [kv_len] * num_layers
    if kv_len < 2 * (budget - window) or num_layers <= 1:
        return [budget] * num_layers
    min_num = (budget - window) // beta
    max_num = 2 * (budget - window) - min_num
    if max_num >= kv_len - window:
        max_num = kv_len - window
        min_num = 2 * (budget - window) - max_num
    steps = (max_num - min_num) // (num_layers - 1)
    return [max_num - layer * steps + window for layer in range(num_layers)]


@register("pyramidkv")
@dataclass(frozen=True)
class PyramidKV(SnapKV):
    """PyramidKV, "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information
    Funneling" (https://arxiv.org/abs/2406.02069).

    SnapKV's scoring and selection (including the `heads` setting), but layer l keeps
    `pyramid_budgets(...)[l]` keys per head: more in lower layers, fewer in higher ones, in SCBench's
    integer steps, with uniform SnapKV when budget <= kv_len < 2 (budget - window).

    SCBench's settings: those of SnapKV (window_size 32, max_capacity_prompt 4,096, kernel_size 5,
    avgpool) and beta 20 (PyramidKVCache does not pass beta on, so the cluster's default holds
    whatever `--hyper_param` says). kvpress' PyramidKVPress derives its layer budgets from a
    compression ratio in floating point (rounded, no uniform band, its own fallback condition); with
    heads="kv" this method keeps SCBench's budgets and takes kvpress' per-KV-head scoring.

    Fields:
        budget (4096): keys kept per head, window included, before the pyramid (SCBench's
            max_capacity_prompt).
        heads ("query"): select per query head (SCBench: K/V repeated to every query head, Hq x
            budget kept) or "kv", once per KV head from group-averaged scores (kvpress).
        window (32): observation window.
        kernel_size (5): pooling kernel, odd.
        pooling ("avgpool"): "avgpool" or "maxpool".
        beta (20): pyramid steepness; the last layer keeps about (budget - window) / beta + window.
    """

    beta: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("beta", lo=1)

    def layer_budget(self, layer: int, num_layers: int, kv_len: int) -> int:
        return pyramid_budgets(self.budget, self.window, num_layers, kv_len, self.beta)[layer]

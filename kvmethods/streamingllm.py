"""StreamingLLM as KV dropping: keep the attention sinks and the most recent keys."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kvmethods.base import DropMethod
from kvmethods.registry import register


@register("streamingllm")
@dataclass(frozen=True)
class StreamingLLM(DropMethod):
    """StreamingLLM, "Efficient Streaming Language Models with Attention Sinks"
    (https://arxiv.org/abs/2309.17453), applied once to the compressed context as in SCBench.

    Keeps the first `sink` keys and the last `budget - sink` keys of the context; everything in
    between becomes invisible. Query-agnostic, so every head keeps the same positions. A context of
    fewer than `budget` keys is kept whole.

    SCBench's settings (minference/models_patch.py, kvcompression.py `StreamingLLMKVCache`): n_init
    128 and n_local 3,968, run as its StreamingLLMKVCluster with window_size = n_local and
    max_capacity_prompt = n_init + n_local = 4,096: the first max_capacity_prompt - window_size
    keys and the last window_size keys of a prefill of at least max_capacity_prompt tokens. Here
    budget = n_init + n_local and sink = n_init. kvpress' StreamingLLMPress keeps the same sets
    (its n_sink defaults to 4).

    Fields:
        budget (4096): keys kept per head (SCBench: 128 sink + 3,968 recent).
        heads ("query"): per query head (SCBench: K/V repeated to every query head, Hq x budget
            kept) or "kv", per KV head (kvpress: Hkv x budget); the kept positions are the same.
        sink (128): attention-sink keys at the start (SCBench's n_init).
    """

    budget: int = 4096
    sink: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("sink", lo=0)
        self._require(self.budget > self.sink, f"budget ({self.budget}) must exceed sink ({self.sink})")

    def _keep(self, q_window: torch.Tensor, k: torch.Tensor, n: int, *, layer: int, num_layers: int) -> torch.Tensor:
        kv_len, heads = k.shape[0], self.selection_heads(q_window.shape[1], k.shape[1])
        keep = torch.zeros(heads, kv_len, dtype=torch.bool, device=k.device)
        keep[:, : self.sink] = True
        keep[:, kv_len - (n - self.sink) :] = True
        return keep

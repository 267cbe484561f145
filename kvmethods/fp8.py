"""FP8 (e4m3) KV cache: every stored key and value is rounded to float8_e4m3fn."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kvmethods.base import QuantMethod
from kvmethods.registry import register
from kvmethods.server_needs import NATIVE, ServerNeeds

E4M3_MAX = 448.0


@register("fp8")
@dataclass(frozen=True)
class FP8(QuantMethod):
    """FP8 KV cache, "FP8 Formats for Deep Learning" (https://arxiv.org/abs/2209.05433), E4M3 as
    in SGLang's / vLLM's `--kv-cache-dtype fp8_e4m3`: x -> e4m3(x / scale) * scale, saturating at
    +-448 (torch.float8_e4m3fn has no infinities). Scope "stored": like a quantized KV cache, every
    token read back from the pool is read quantized, whenever it was written (the tokens an extend
    brings are attended in full precision by that extend).

    Fields:
        budget (4096): unused; accepted so budget sweeps can include it.
        scale (1.0): per-tensor scale for both K and V (SGLang's default k_scale = v_scale = 1.0).
    """

    scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require(self.scale > 0, f"scale must be > 0, got {self.scale}")

    def server_needs(self, device: str) -> ServerNeeds:
        """On CUDA, SGLang's native FP8 KV cache (`--kv-cache-dtype fp8_e4m3`); elsewhere the `kvm`
        backend reads the stored KV through `quantize`."""
        if device == "cuda":
            return ServerNeeds(backend=NATIVE, kv_cache_dtype="fp8_e4m3")
        return ServerNeeds()

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        y = (x.float() / self.scale).clamp_(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
        return (y.float() * self.scale).to(x.dtype)

    def quantize_where(
        self, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_kv(k, v, keys, values)
        return (
            torch.where(keys[:, None, None], self.quantize(k), k),
            torch.where(values[:, None, None], self.quantize(v), v),
        )

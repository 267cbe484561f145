"""KIVI: asymmetric low-bit KV quantization, keys per channel and values per token."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kvmethods.base import QuantMethod
from kvmethods.registry import register


def fake_quant(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """Round x to 2**bits uniform levels between lo and hi (broadcast), then dequantize."""
    levels = 2**bits - 1
    step = (hi - lo) / levels
    step = torch.where(step > 0, step, torch.ones_like(step))
    return ((x - lo) / step).round_().clamp_(0, levels) * step + lo


@register("kivi")
@dataclass(frozen=True)
class KIVI(QuantMethod):
    """KIVI, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache"
    (https://arxiv.org/abs/2402.02750), as a quantize -> dequantize function over a request's KV.

    Keys are quantized per channel over groups of `group_size` consecutive tokens (groups aligned at
    position 0); the trailing kv_len mod `residual` keys stay in full precision (KIVI's key residual
    buffer). Values are quantized per token over groups of `group_size` channels; the last
    `residual` values stay in full precision. Both use min/max asymmetric rounding to 2**bits levels.

    Fields:
        budget (4096): unused; accepted so budget sweeps can include it.
        bits (2): bits per quantized element (1..8).
        group_size (32): tokens per key group, channels per value group.
        residual (32): full-precision recent tokens (a multiple of group_size).
    """

    bits: int = 2
    group_size: int = 32
    residual: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("bits", lo=1, hi=8)
        self._check_range("group_size", lo=1)
        self._check_range("residual", lo=self.group_size)
        self._require(
            self.residual % self.group_size == 0,
            f"residual ({self.residual}) must be a multiple of group_size ({self.group_size})",
        )

    def quantize_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_kv(k, v)
        return self.quantize_keys(k), self.quantize_values(v)

    def quantize_keys(self, k: torch.Tensor) -> torch.Tensor:
        """k [n, H, D]: per-channel groups of `group_size` tokens over the first n - n % residual."""
        n = k.shape[0]
        nq = n - n % self.residual
        out = k.clone()
        if nq:
            x = k[:nq].float().view(nq // self.group_size, self.group_size, *k.shape[1:])
            lo, hi = x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
            out[:nq] = fake_quant(x, lo, hi, self.bits).view(nq, *k.shape[1:]).to(k.dtype)
        return out

    def quantize_values(self, v: torch.Tensor) -> torch.Tensor:
        """v [n, H, D]: per-token groups of `group_size` channels over all but the last `residual`."""
        nq = max(0, v.shape[0] - self.residual)
        out = v.clone()
        if nq:
            d, gs = v.shape[-1], self.group_size
            x = v[:nq].float()
            pad = math.ceil(d / gs) * gs - d
            if pad:  # repeat the last channel: the partial group's min/max are unchanged
                x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], pad)], dim=-1)
            x = x.view(*x.shape[:-1], -1, gs)
            lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
            deq = fake_quant(x, lo, hi, self.bits).flatten(-2)[..., :d]
            out[:nq] = deq.to(v.dtype)
        return out

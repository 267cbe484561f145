"""KIVI: asymmetric low-bit KV quantization, keys per channel and values per token."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from kvmethods.base import QuantMethod
from kvmethods.registry import register
from kvmethods.server_needs import ServerNeeds


def fake_quant(x: torch.Tensor, dim: int, bits: int) -> torch.Tensor:
    """Quantize x in groups (each slice along `dim` is one group) and dequantize, exactly as
    SCBench's KIVI does.

    Quantization (minference/modules/kivi.py `triton_quantize_and_pack_along_last_dim`), in x's
    dtype: mn, mx = the group's min and max; scale = (mx - mn) / (2**bits - 1);
    code = round(clamp((x - mn) / scale, 0, 2**bits - 1)) (round half to even).
    Dequantization (KIVI's `gemv_forward_cuda_outer_dim` kernel, which SCBench's `kivi_forward`
    calls with scale and mn cast to float16): float32 scale * code + mn, one rounding (the product is
    exact in float32, so fused or not the kernel gives this). Returned in x's dtype. A group whose
    values are all equal (scale 0, which SCBench turns into NaN codes times a zero scale) reads mn.
    """
    levels = 2**bits - 1
    mn = x.amin(dim=dim, keepdim=True)
    mx = x.amax(dim=dim, keepdim=True)
    scale = (mx - mn) / levels
    code = (x - mn).div_(scale).clamp_(0, levels).round_()
    code = torch.where(scale == 0, torch.zeros_like(code), code)
    deq = code.float().mul_(scale.to(torch.float16).float()).add_(mn.to(torch.float16).float())
    return deq.to(x.dtype)


def _marked_span(marked: torch.Tensor) -> int:
    """1 + the last marked position (0 when nothing is marked)."""
    hits = marked.nonzero()
    return int(hits[-1, 0]) + 1 if hits.numel() else 0


@register("kivi")
@dataclass(frozen=True)
class KIVI(QuantMethod):
    """KIVI, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache"
    (https://arxiv.org/abs/2402.02750), as SCBench runs it (minference/modules/kivi.py `KiviCache`).

    Keys are quantized per channel over groups of `group_size` consecutive tokens (groups aligned at
    position 0), values per token over groups of `group_size` channels; min/max asymmetric rounding
    to 2**bits levels (`fake_quant`: SCBench's arithmetic, in the model's dtype, dequantized as
    KIVI's CUDA kernel does).

    What is quantized, and when (scope "context"): SCBench quantizes the KV of the first prefill
    only. A first prefill of T tokens leaves its keys quantized except the last T mod `residual`
    (all of them when T is a multiple of `residual`, none when T < `residual`), and its values
    except the last `residual` (none when T <= `residual`). It attends in full precision. Every
    token appended afterwards stays in full precision and is never re-quantized (`KiviCache.update`
    concatenates it to the full-precision part): the decoded tokens (which multi-turn mode with the
    gold history discards after the turn), each later turn (fed one token at a time), and in
    multi-request mode each question and its answer (discarded after the question). Here the KV
    backend marks the context prefill's slots by `context_split` and reads them quantized; every
    slot written later, by an extend or a decode step, reads in full precision.

    SCBench's settings (minference/models_patch.py): bits 2, group_size 32, residual_length 32.
    SCBench's kernel handles 2 and 4 bits and needs head_dim a multiple of group_size; here any
    1..8 bits, and a partial last value group (its min/max are those of the channels it has).

    Fields:
        budget (4096): unused; accepted so budget sweeps can include it.
        bits (2): bits per quantized element (1..8).
        group_size (32): tokens per key group, channels per value group.
        residual (32): SCBench's residual_length (a multiple of group_size).
    """

    scope: ClassVar[str] = "context"

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

    def server_needs(self, device: str) -> ServerNeeds:
        """Pages of `group_size` tokens: SGLang matches radix prefixes in whole pages, so a shared
        prefix never splits a quantization group."""
        return ServerNeeds(page_size=self.group_size)

    def context_split(self, seq_len: int) -> tuple[int, int]:
        """Keys [0, T - T mod residual) and values [0, T - residual) of a T-token context prefill."""
        return seq_len - seq_len % self.residual, max(0, seq_len - self.residual)

    def quantize_where(
        self, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_kv(k, v, keys, values)
        return self.quantize_keys(k, keys), self.quantize_values(v, values)

    def quantize_keys(self, k: torch.Tensor, marked: torch.Tensor) -> torch.Tensor:
        """k [n, H, D]: marked positions read their group's per-channel quantization. Groups are
        the whole `group_size`-token groups from position 0 (a marked position in a trailing
        partial group stays in full precision: SCBench never quantizes one)."""
        gs = self.group_size
        nq = min(math.ceil(_marked_span(marked) / gs) * gs, k.shape[0] - k.shape[0] % gs)
        if nq == 0:
            return k
        x = k[:nq].view(nq // gs, gs, *k.shape[1:])
        deq = fake_quant(x, dim=1, bits=self.bits).view(nq, *k.shape[1:])
        out = k.clone()
        out[:nq] = torch.where(marked[:nq, None, None], deq, k[:nq])
        return out

    def quantize_values(self, v: torch.Tensor, marked: torch.Tensor) -> torch.Tensor:
        """v [n, H, D]: marked positions read their per-token quantization over `group_size`-channel
        groups."""
        nv = _marked_span(marked)
        if nv == 0:
            return v
        d, gs = v.shape[-1], self.group_size
        x = v[:nv]
        pad = math.ceil(d / gs) * gs - d
        if pad:  # repeat the last channel: the partial group's min/max are unchanged
            x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], pad)], dim=-1)
        deq = fake_quant(x.reshape(*x.shape[:-1], -1, gs), dim=-1, bits=self.bits).flatten(-2)[..., :d]
        out = v.clone()
        out[:nv] = torch.where(marked[:nv, None, None], deq, v[:nv])
        return out

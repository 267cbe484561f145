"""Index plans: which keys each query row of one request may attend to, in one layer.

A `SparsePlan` describes, for one request and one layer, the visible keys of every query row as
a union of simple components, intersected with causality and with a per-head key visibility mask.
Positions follow FlashInfer's bottom-right-aligned causal convention: query row `i` of `q_len`
sits at position `p = kv_len - q_len + i` and may only see `kv_idx <= p`.

Row `i` of plan head `h` sees key `j` iff

    j <= p                                     (causal)
    and visibility[h, j]                       (KV dropping; all True when None)
    and ( j < sink                             (attention sinks)
          or j >= p - window + 1               (causal window; FlashInfer window_left = window - 1)
          or j in vertical[h]                  (per-head vertical columns)
          or p - j in slash[h]                 (per-head slash diagonals, as offsets)
          or block_mask[h, i // qb, j // bs]   (per-head block mask; qb = query_block_size or bs)
          or i >= q_len - dense_rows )         (the last `dense_rows` rows are dense)

With `slash_band = B > 0` the slash and vertical terms follow MInference's kernel instead
(`kvmethods.slash_bands`): row i belongs to row block b = i // B; the slash offsets give block b
a set of key ranges (a band of B keys per diagonal, merged as `convert_vertical_slash_indexes`
does), and `j in vertical[h]` counts only below the block's last range end:

          or j in bands(h, b)                  (slash bands of the row's block)
          or (j in vertical[h] and j < col_limit(h, b))

H, the plan's heads, are either the KV heads (one selection per KV head, shared by its query group)
or the query heads (one selection per query head: SCBench repeats K/V to every query head before
selecting). Query head `hq` uses plan head `hq // (Hq // H)` and KV head `hq // (Hq // Hkv)`, so H
must divide Hq and be a multiple of Hkv. `expand_heads` turns a per-KV-head plan into a per-query-head one.
All tensors live on the CPU. `dense_mask()` is the exact reference of these semantics; the
executors (`kvmethods.torch_executor`, FlashInfer on GPU) must agree with it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from kvmethods.slash_bands import BandSegments

__all__ = ["SparsePlan"]


def _as_cpu(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.detach().to(device="cpu", dtype=dtype)


@dataclass(frozen=True, eq=False)
class SparsePlan:
    """Visible keys of every query row of one request in one layer (see the module docstring).

    Fields:
        q_len: query rows in this prefill/extend (1 at decode).
        kv_len: keys of the request, including any cached prefix (kv_len >= q_len).
        num_heads: H, the heads the per-head tensors are indexed by (KV heads or query heads).
        sink: keys [0, sink) are visible to every row (causality permitting).
        window: a causal window of `window` keys ending at the row's position (0 = none).
        vertical: int64 [H, nv] key indices visible to every row; entries < 0 are padding.
        slash: int64 [H, ns] diagonal offsets o >= 0 (row at p sees key p - o); < 0 is padding.
        block_mask: bool [H, ceil(q_len / query_block), ceil(kv_len / block_size)]; query blocks are
            counted from this plan's first query row, key blocks from key 0.
        block_size: key block edge of `block_mask` (and its query block edge by default).
        dense_rows: the last `dense_rows` query rows see every causal key.
        visibility: bool [H, kv_len]; keys marked False are invisible to every row.
        slash_band: 0, slash offsets are exact diagonals; B > 0, MInference's kernel semantics
            (bands of B keys per block of B rows, see the module docstring); needs `slash`.
        query_block_size: query rows per `block_mask` row (0 = block_size); 1 selects key blocks
            per query row (Quest's chunks of a multi-row extend).
    """

    q_len: int
    kv_len: int
    num_heads: int
    sink: int = 0
    window: int = 0
    vertical: torch.Tensor | None = None
    slash: torch.Tensor | None = None
    block_mask: torch.Tensor | None = None
    block_size: int = 128
    dense_rows: int = 0
    visibility: torch.Tensor | None = None
    slash_band: int = 0
    query_block_size: int = 0

    def __post_init__(self) -> None:
        H = self.num_heads
        if not (0 <= self.q_len <= self.kv_len) or H < 1:
            raise ValueError(
                f"SparsePlan needs 0 <= q_len <= kv_len and num_heads >= 1, got q_len={self.q_len}, "
                f"kv_len={self.kv_len}, num_heads={H}"
            )
        for name in ("sink", "window", "dense_rows", "slash_band", "query_block_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"SparsePlan.{name} must be >= 0, got {getattr(self, name)}")
        if self.block_size < 1:
            raise ValueError(f"SparsePlan.block_size must be >= 1, got {self.block_size}")
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("vertical", _as_cpu(self.vertical, torch.int64))
        set_("slash", _as_cpu(self.slash, torch.int64))
        set_("block_mask", _as_cpu(self.block_mask, torch.bool))
        set_("visibility", _as_cpu(self.visibility, torch.bool))
        for name in ("vertical", "slash"):
            t = getattr(self, name)
            if t is not None and (t.dim() != 2 or t.shape[0] != H):
                raise ValueError(f"SparsePlan.{name} must be [num_heads={H}, n], got {tuple(t.shape)}")
        if self.slash_band and self.slash is None:
            raise ValueError("SparsePlan.slash_band needs slash offsets")
        if self.block_mask is not None:
            want = (H, math.ceil(self.q_len / self.query_block), math.ceil(self.kv_len / self.block_size))
            if tuple(self.block_mask.shape) != want:
                raise ValueError(f"SparsePlan.block_mask must be {want}, got {tuple(self.block_mask.shape)}")
        if self.visibility is not None and tuple(self.visibility.shape) != (H, self.kv_len):
            raise ValueError(
                f"SparsePlan.visibility must be [num_heads, kv_len] = {(H, self.kv_len)}, "
                f"got {tuple(self.visibility.shape)}"
            )

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def full(cls, q_len: int, kv_len: int, num_heads: int) -> SparsePlan:
        """Dense causal attention: every row sees all keys up to its position."""
        return cls(q_len=q_len, kv_len=kv_len, num_heads=num_heads, window=max(kv_len, 1))

    def expand_heads(self, num_heads: int) -> SparsePlan:
        """The same plan indexed by `num_heads` heads (a multiple of H): head h's selection is given
        to heads h * r .. h * r + r - 1, r = num_heads // H (KV heads -> their query heads)."""
        if num_heads == self.num_heads:
            return self
        if num_heads < self.num_heads or num_heads % self.num_heads:
            raise ValueError(f"expand_heads: {num_heads} heads is not a multiple of the plan's {self.num_heads}")
        r = num_heads // self.num_heads
        rep = lambda t: None if t is None else t.repeat_interleave(r, dim=0)  # noqa: E731
        return dataclasses.replace(
            self, num_heads=num_heads, vertical=rep(self.vertical), slash=rep(self.slash),
            block_mask=rep(self.block_mask), visibility=rep(self.visibility),
        )

    def with_visibility(self, visibility: torch.Tensor | None) -> SparsePlan:
        """This plan with keys outside `visibility` (bool [Hv, kv_len]) made invisible (ANDed).

        Hv may differ from H when one divides the other (per-KV-head and per-query-head selections
        meet): the result is indexed by the larger of the two."""
        if visibility is None:
            return self
        visibility = _as_cpu(visibility, torch.bool)
        hv = visibility.shape[0] if visibility.dim() == 2 else -1
        if hv > self.num_heads and hv % self.num_heads == 0:
            return self.expand_heads(hv).with_visibility(visibility)
        if 0 < hv < self.num_heads and self.num_heads % hv == 0:
            visibility = visibility.repeat_interleave(self.num_heads // hv, dim=0)
        if tuple(visibility.shape) != (self.num_heads, self.kv_len):
            raise ValueError(
                f"visibility must be [num_heads, kv_len] = {(self.num_heads, self.kv_len)}, "
                f"got {tuple(visibility.shape)}"
            )
        if self.visibility is not None:
            visibility = visibility & self.visibility
        return dataclasses.replace(self, visibility=visibility)

    # -- properties ------------------------------------------------------------------------------

    @property
    def query_offset(self) -> int:
        """Position of query row 0: kv_len - q_len."""
        return self.kv_len - self.q_len

    @property
    def query_block(self) -> int:
        """Query rows per `block_mask` row."""
        return self.query_block_size or self.block_size

    def bands(self) -> BandSegments:
        """The slash bands of every (head, row block) when `slash_band` > 0 (computed once)."""
        cached = self.__dict__.get("_bands")
        if cached is None:
            cached = BandSegments.build(self.slash, q_len=self.q_len, kv_len=self.kv_len, band=self.slash_band)
            object.__setattr__(self, "_bands", cached)
        return cached

    @property
    def covers_causal(self) -> bool:
        """Every row sees its whole causal range (before visibility)."""
        return self.dense_rows >= self.q_len or self.sink + self.window >= self.kv_len

    @property
    def is_full(self) -> bool:
        """Plain dense causal attention (no restriction, no visibility mask)."""
        return self.covers_causal and self.visibility is None

    @property
    def is_static(self) -> bool:
        """Only sink / window / dense rows: the same key ranges for every head."""
        return self.vertical is None and self.slash is None and self.block_mask is None

    # -- dense reference -------------------------------------------------------------------------

    def vertical_mask(self) -> torch.Tensor | None:
        """bool [H, kv_len]: keys named in `vertical` (None when there are none)."""
        return self._index_mask(self.vertical)

    def slash_mask(self) -> torch.Tensor | None:
        """bool [H, kv_len] over offsets: True at o when o is one of the head's slash offsets."""
        return self._index_mask(self.slash)

    def _index_mask(self, idx: torch.Tensor | None) -> torch.Tensor | None:
        if idx is None:
            return None
        mask = torch.zeros(self.num_heads, self.kv_len + 1, dtype=torch.bool)
        safe = torch.where((idx >= 0) & (idx < self.kv_len), idx, self.kv_len)
        mask.scatter_(1, safe, True)
        return mask[:, : self.kv_len]

    def rows_mask(self, start: int, end: int) -> torch.Tensor:
        """bool [H, end - start, kv_len]: the visibility of query rows [start, end)."""
        H, kv = self.num_heads, self.kv_len
        rows = torch.arange(start, end)
        pos = (self.query_offset + rows)[:, None]  # [c, 1]
        j = torch.arange(kv)[None, :]  # [1, kv]
        causal = j <= pos
        if self.covers_causal:
            mask = causal.expand(H, -1, -1).clone()
        else:
            comp = (j < self.sink) | (j > pos - self.window) if self.window else (j < self.sink)
            comp = comp | (rows >= self.q_len - self.dense_rows)[:, None] if self.dense_rows else comp
            comp = comp.expand(H, end - start, kv).clone()
            vmask = self.vertical_mask()
            if self.slash_band:
                B = self.slash_band
                b0 = start // B
                blocks = max((end - 1) // B + 1, b0)  # no block for an empty row range
                comp |= self.bands().cover(b0, blocks, kv)[:, rows // B - b0]
                if vmask is not None:
                    limit = self.bands().col_limit[:, rows // B]  # [H, c]
                    comp |= vmask[:, None, :] & (j[None] < limit[:, :, None])
            else:
                if vmask is not None:
                    comp |= vmask[:, None, :]
                smask = self.slash_mask()
                if smask is not None:
                    offs = (pos - j).clamp(0, kv - 1).expand(H, -1, -1)
                    comp |= torch.gather(smask, 1, offs.reshape(H, -1)).view(H, end - start, kv)
            if self.block_mask is not None:
                comp |= self.block_mask[:, rows // self.query_block][:, :, torch.arange(kv) // self.block_size]
            mask = causal & comp
        if self.visibility is not None:
            mask &= self.visibility[:, None, :]
        return mask

    def dense_mask(self, q_len: int | None = None, kv_len: int | None = None) -> torch.Tensor:
        """bool [H, q_len, kv_len]: the exact visibility of every (head, row, key)."""
        if (q_len is not None and q_len != self.q_len) or (kv_len is not None and kv_len != self.kv_len):
            raise ValueError(
                f"this plan is for q_len={self.q_len}, kv_len={self.kv_len}; got q_len={q_len}, kv_len={kv_len}"
            )
        return self.rows_mask(0, self.q_len)

    # -- statistics ------------------------------------------------------------------------------

    def visible_fraction(self, seq_len: int | None = None) -> float:
        """Fraction of the request's keys the last query row sees, averaged over the plan's heads."""
        if self.q_len == 0 or self.kv_len == 0:
            return 1.0
        n = seq_len if seq_len is not None else self.kv_len
        return float(self.rows_mask(self.q_len - 1, self.q_len).sum()) / (self.num_heads * max(n, 1))

    def density(self, sample: int | None = None) -> float:
        """Visible (head, row, key) pairs over causal pairs: the attention compute kept.

        `sample` evaluates that many evenly spaced rows instead of all (cheap for long prompts).
        """
        if self.q_len == 0:
            return 1.0
        if sample is None or sample >= self.q_len:
            spans = [(a, min(self.q_len, a + 256)) for a in range(0, self.q_len, 256)]
        else:
            rows = torch.linspace(0, self.q_len - 1, sample).round().long().unique().tolist()
            spans = [(r, r + 1) for r in rows]
        seen = causal = 0
        for a, b in spans:
            seen += int(self.rows_mask(a, b).sum())
            causal += sum(self.query_offset + i + 1 for i in range(a, b))
        return seen / max(1, causal * self.num_heads)

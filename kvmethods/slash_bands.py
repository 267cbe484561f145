"""MInference's slash bands: the keys `convert_vertical_slash_indexes` gives each block of rows.

MInference's kernel (csrc/vertical_slash_index.cu in microsoft/MInference, used by SCBench) does
not attend a selected diagonal exactly. Rows are processed in blocks of B = 64; for the block whose
positions end at E (exclusive), diagonal offset o covers the band of keys
[max(E - o, B) - B, max(E - o, B)) (offsets o >= E are skipped), and the bands are merged in
ascending key order into ranges:

    range = first band; for each next band ending at s:
        s > range_end + B:  save range, start a new one at the band
        s > range_end:      range_end += B      (one whole step, so a range may reach past s)
        otherwise:          nothing

The vertical columns are then attended only below the last range's end (the kernel stops reading
them when the slashes run out). Each row sees its block's ranges and those columns, causally.

`BandSegments.build` computes these ranges for every (plan head, row block) without a loop over
offsets: with offsets sorted descending, a new range can only start where two consecutive offsets
differ by more than B (the loop below runs over those "gaps"), and whether it does depends only on
the current range's first offset. Rows of a plan sit at positions query_offset + i; block b holds
rows [b B, (b + 1) B) and ends at position E_b = query_offset + (b + 1) B, as in the kernel when
query_offset is 0 (a fresh prefill).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["BandSegments"]


@dataclass(frozen=True, eq=False)
class BandSegments:
    """Key ranges of every (head, row block), flattened in (block, head) order.

    Fields:
        num_heads: H; num_blocks: row blocks of `band` rows; band: B.
        ptr: int64 [num_blocks * H + 1]; the ranges of (block b, head h) are entries
            ptr[b H + h] .. ptr[b H + h + 1] of `start` / `end`.
        start, end: int64 [N] key ranges [start, end), clipped to [0, kv_len].
        group: int64 [N] the (b H + h) of each range.
        col_limit: int64 [H, num_blocks]; vertical columns < col_limit are attended.
    """

    num_heads: int
    num_blocks: int
    band: int
    ptr: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    group: torch.Tensor
    col_limit: torch.Tensor

    @classmethod
    def build(cls, slash: torch.Tensor, *, q_len: int, kv_len: int, band: int) -> BandSegments:
        """slash: int64 [H, ns] diagonal offsets (< 0 is padding), CPU."""
        H = slash.shape[0]
        nrb = math.ceil(q_len / band)
        off = kv_len - q_len
        offs = slash.sort(dim=1, descending=True).values  # padding (< 0) last
        n = (offs >= 0).sum(dim=1)  # [H] offsets per head
        ends = off + band * (torch.arange(nrb) + 1)  # [nrb] E_b
        ascending = offs.flip(1).contiguous()

        def count_at_least(x: torch.Tensor) -> torch.Tensor:  # [H, nrb]: offsets >= x
            return offs.shape[1] - torch.searchsorted(ascending, x.expand(H, -1).contiguous())

        i0, i1 = count_at_least(ends[None, :]), count_at_least(ends[None, :] - band)  # first offset < E, < E - B
        # Offsets in [E - B, E) all give the band [0, B): one "virtual" offset E - B stands for them.
        virtual = i1 > i0
        at_i1 = offs.gather(1, i1.clamp(max=offs.shape[1] - 1))
        empty = ~virtual & (i1 >= n[:, None])
        first = torch.where(virtual, ends[None, :] - band, at_i1)
        # The gap after a virtual first offset starts a new range iff the next band leaves a gap.
        special = virtual & (i1 < n[:, None]) & (at_i1 < ends[None, :] - 2 * band)
        anchor = torch.where(special, at_i1, first)
        last = torch.where(virtual & (i1 >= n[:, None]), first, offs.gather(1, (n - 1).clamp(min=0)[:, None]))

        # Gaps > B between consecutive offsets, per head (padded with an index never active).
        idx = torch.arange(offs.shape[1])
        gap = torch.zeros_like(offs)
        gap[:, 1:] = offs[:, :-1] - offs[:, 1:]
        is_event = (gap > band) & (idx[None, :] >= 1) & (idx[None, :] < n[:, None])
        n_ev = int(is_event.sum(dim=1).max()) if is_event.numel() else 0
        ev = torch.full((H, max(n_ev, 1)), offs.shape[1], dtype=torch.long)
        rows, cols = is_event.nonzero(as_tuple=True)
        rank = is_event.long().cumsum(dim=1) - 1
        ev[rows, rank[rows, cols]] = cols
        padded = torch.cat([offs, offs[:, -1:]], dim=1)  # index ns reads a harmless value
        prev = padded.gather(1, (ev - 1).clamp(min=0))  # [H, n_ev]
        cur = padded.gather(1, ev)
        broke = torch.zeros(H, nrb, max(n_ev, 1), dtype=torch.bool)
        start_idx = i1 + 1  # events at or after the offset following the first one
        valid_ev = ev < n[:, None]
        for e in range(n_ev):
            active = (ev[:, e : e + 1] >= start_idx) & valid_ev[:, e : e + 1] & ~empty
            p, c = prev[:, e : e + 1], cur[:, e : e + 1]
            # A new range iff the next band ends past the current range's end + B; the range end
            # lies (p - anchor) mod B keys past band p's end.
            brk = active & ((p - c) > band + torch.remainder(p - anchor, band))
            broke[:, :, e] = brk
            anchor = torch.where(brk, c, anchor)
        return cls._assemble(H, nrb, band, kv_len, ends, first, special, at_i1, empty, last, prev, cur, broke)

    @classmethod
    def _assemble(cls, H, nrb, band, kv_len, ends, first, special, at_i1, empty, last, prev, cur, broke):
        """Pairs every range's first offset (anchor) with its last offset, in range order."""
        hh, bb = torch.meshgrid(torch.arange(H), torch.arange(nrb), indexing="ij")
        group = bb * H + hh  # [H, nrb]
        stride = broke.shape[2] + 2
        bh, bb_, be = broke.nonzero(as_tuple=True)
        # anchors: special (order 0), first anchor (order 1), each break (order e + 2)
        ok = ~empty
        sp = special & ok
        a_key = torch.cat([group[sp] * stride, group[ok] * stride + 1, group[bh, bb_] * stride + be + 2])
        a_val = torch.cat([first[sp], torch.where(special, at_i1, first)[ok], cur[bh, be]])
        # lasts: special (order 0), each break (order e + 1), the final one (order stride - 1)
        l_key = torch.cat([group[sp] * stride, group[bh, bb_] * stride + be + 1, group[ok] * stride + stride - 1])
        l_val = torch.cat([first[sp], prev[bh, be], last[ok]])
        a_val = a_val[a_key.argsort()]
        l_order = l_key.argsort()
        l_val, key = l_val[l_order], l_key[l_order]
        seg_group = key // stride
        e_b = ends[seg_group // H]
        start = (e_b - a_val - band).clamp(0, kv_len)
        end = (e_b - l_val + torch.remainder(l_val - a_val, band)).clamp(0, kv_len)
        counts = torch.bincount(seg_group, minlength=H * nrb)
        ptr = torch.zeros(H * nrb + 1, dtype=torch.long)
        ptr[1:] = counts.cumsum(0)
        col_limit = torch.zeros(H * nrb, dtype=torch.long)
        has = counts > 0
        col_limit[has] = (e_b - l_val + torch.remainder(l_val - a_val, band))[ptr[1:][has] - 1]
        return cls(H, nrb, band, ptr, start, end, seg_group, col_limit.view(nrb, H).T.contiguous())

    def cover(self, b0: int, b1: int, kv_len: int, device=None, head: int | None = None) -> torch.Tensor:
        """bool [H, b1 - b0, kv_len] (or [b1 - b0, kv_len] for one `head`): the keys below kv_len
        that the ranges of row blocks [b0, b1) cover, built on `device`."""
        H, nb = self.num_heads, b1 - b0
        lo, hi = int(self.ptr[b0 * H]), int(self.ptr[b1 * H])
        group = self.group[lo:hi] - b0 * H
        start, end = self.start[lo:hi].clamp(max=kv_len), self.end[lo:hi].clamp(max=kv_len)
        if head is not None:
            mine = group % H == head
            group, start, end, H = group[mine] // H, start[mine], end[mine], 1
        diff = torch.zeros(nb * H, kv_len + 1, dtype=torch.int32, device=device)
        ones = torch.ones(group.numel(), dtype=torch.int32, device=device)
        diff.index_put_((group.to(device), start.to(device)), ones, accumulate=True)
        diff.index_put_((group.to(device), end.to(device)), -ones, accumulate=True)
        covered = diff.cumsum(dim=1)[:, :kv_len] > 0
        return covered if head is not None else covered.view(nb, H, kv_len).transpose(0, 1)

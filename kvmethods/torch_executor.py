"""Exact PyTorch attention over a `SparsePlan`: the CPU executor and the oracle for FlashInfer.

Semantics are FlashInfer's: bottom-right-aligned causal mask (row i sits at kv_len - q_len + i),
inclusive windows, float32 accumulation, and a base-2 log-sum-exp per (row, query head) so that
partial results merge with `merge_state`.

Speed comes from gathering only what a chunk of query rows can see: rows are processed in chunks,
and for each chunk the union of the keys its rows may see (sinks, the window range, verticals, the
key ranges swept by the slash diagonals or covered by their bands, the selected blocks, intersected
with the visibility mask) is gathered once; an exact per-row mask then removes what an individual
row may not see. A full-causal plan takes a dense path that reads each chunk's causal prefix in place.
"""

from __future__ import annotations

import math

import torch

from kvmethods.plan import SparsePlan

__all__ = ["attend", "causal_attention", "check_inputs", "expand_kv", "merge_state"]

LOG2E = 1.0 / math.log(2.0)
_SCORE_ELEMS = 1 << 22  # dense-path scores per chunk (16 MiB of float32: stays closer to cache)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: SparsePlan,
    *,
    scale: float,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q over the keys `plan` makes visible.

    Args:
        q: [q_len, Hq, D] queries of this prefill / decode step (any float dtype).
        k: [kv_len, Hkv, D] keys, cached prefix included; v: [kv_len, Hkv, Dv] values.
        plan: the plan for (q_len, kv_len, H) with H the KV heads or the query heads (a multiple of
            Hkv dividing Hq); query head h follows plan head h // (Hq // H), reads KV head h // (Hq // Hkv).
        scale: softmax scale applied to q . k.
        chunk_size: query rows per step (default: chosen from the plan and the sizes).
    Returns:
        out [q_len, Hq, Dv] in q's dtype (0 for a row that sees no key) and
        lse [q_len, Hq] float32, log2 of sum_j exp(scale q . k_j) (-inf for a row that sees no key).
    It computes on the CPU; inputs on another device are copied over and results copied back.
    """
    q_len, hq, d = check_inputs(q, k, v, plan)
    device = q.device
    q, k, v = q.cpu(), k.cpu(), v.cpu()
    if plan.num_heads > k.shape[1]:  # a per-query-head plan: each plan head gets its own K/V copy
        k, v = expand_kv(k, plan.num_heads), expand_kv(v, plan.num_heads)
    kv_len, hkv, dv = k.shape[0], k.shape[1], v.shape[2]
    g = hq // hkv
    out = torch.zeros(hkv, g, q_len, dv)
    lse = torch.full((hkv, g, q_len), float("-inf"))
    if q_len and kv_len:
        qh = q.float().view(q_len, hkv, g, d).permute(1, 2, 0, 3)  # [H, G, n, D]
        kh = k.float().transpose(0, 1).contiguous()  # [H, kv, D]
        vh = v.float().transpose(0, 1).contiguous()
        vis = plan.visibility
        if vis is not None and bool(vis.all()):
            vis = None
        if plan.covers_causal and vis is None:
            step = chunk_size or _dense_chunk(hq, kv_len)
            _dense(qh, kh, vh, plan.query_offset, scale, out, lse, step)
        else:
            step = chunk_size or _sparse_chunk(plan, hq)
            _sparse(qh, kh, vh, plan, vis, scale, out, lse, step)
    out = out.permute(2, 0, 1, 3).reshape(q_len, hq, dv).to(device=device, dtype=q.dtype)
    return out, lse.permute(2, 0, 1).reshape(q_len, hq).to(device)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float) -> torch.Tensor:
    """A fresh prefill's plain causal attention (q_len == kv_len), output only: what `attend`
    computes for a full plan without visibility limits, through torch's fused causal SDPA kernel
    (faster than the chunked path on CPU; no LSE). q [n, Hq, D], k [n, Hkv, D], v [n, Hkv, Dv];
    returns [n, Hq, Dv] in q's dtype, computed in float32."""
    n, hq, _ = q.shape
    if k.shape[0] != n or hq % k.shape[1]:
        raise ValueError(f"causal_attention needs q_len == kv_len and Hq a multiple of Hkv; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}")
    out = torch.nn.functional.scaled_dot_product_attention(
        q.float().transpose(0, 1)[None], k.float().transpose(0, 1)[None], v.float().transpose(0, 1)[None],
        scale=scale, is_causal=True, enable_gqa=True,
    )  # [1, Hq, n, Dv]; with q_len == kv_len top-left and bottom-right alignment coincide
    return out[0].transpose(0, 1).to(q.dtype)


def merge_state(
    v_a: torch.Tensor, s_a: torch.Tensor, v_b: torch.Tensor, s_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge two partial attention results over disjoint key sets (FlashInfer's `merge_state`).

    v_a, v_b: [n, H, D] outputs; s_a, s_b: [n, H] base-2 LSEs. Returns (v [n, H, D] in v_a's
    dtype, s [n, H] float32). A side with LSE -inf (no keys) contributes nothing.
    """
    if v_a.shape != v_b.shape or s_a.shape != s_b.shape or s_a.shape != v_a.shape[:-1]:
        raise ValueError(
            f"merge_state needs v [n, H, D] and s [n, H] of matching shapes, got v {tuple(v_a.shape)} / "
            f"{tuple(v_b.shape)}, s {tuple(s_a.shape)} / {tuple(s_b.shape)}"
        )
    s_a, s_b = s_a.float(), s_b.float()
    s_max = torch.maximum(s_a, s_b).clamp(min=torch.finfo(torch.float32).min)
    w_a, w_b = torch.exp2(s_a - s_max), torch.exp2(s_b - s_max)
    total = w_a + w_b
    v = (v_a.float() * w_a[..., None] + v_b.float() * w_b[..., None]) / total.clamp_min(1e-30)[..., None]
    return v.to(v_a.dtype), s_max + torch.log2(total)


# -- internals ---------------------------------------------------------------------------------


def expand_kv(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """x [n, Hkv, D] -> [n, num_heads, D]: KV head h repeated for plan heads h * r .. h * r + r - 1."""
    return x.repeat_interleave(num_heads // x.shape[1], dim=1)


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan) -> tuple[int, int, int]:
    """Shapes of q, k, v agree with each other and with the plan; returns (q_len, Hq, D)."""
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError(
            f"attend expects q [q_len, Hq, D], k [kv_len, Hkv, D], v [kv_len, Hkv, Dv]; got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    q_len, hq, d = q.shape
    if k.shape[2] != d or k.shape[:2] != v.shape[:2] or hq % k.shape[1]:
        raise ValueError(
            f"attend: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} need one head_dim for q/k, "
            "the same [kv_len, Hkv] for k/v and Hq divisible by Hkv"
        )
    heads_ok = plan.num_heads % k.shape[1] == 0 and hq % plan.num_heads == 0
    if (plan.q_len, plan.kv_len) != (q_len, k.shape[0]) or not heads_ok:
        raise ValueError(
            f"attend: the plan is for q_len={plan.q_len}, kv_len={plan.kv_len}, num_heads={plan.num_heads} "
            f"but got q_len={q_len}, kv_len={k.shape[0]}, {k.shape[1]} KV heads and {hq} query heads "
            "(the plan's heads must be a multiple of the KV heads and divide the query heads)"
        )
    return q_len, hq, d


def _dense_chunk(hq: int, kv_len: int) -> int:
    rows = _SCORE_ELEMS // max(1, hq * kv_len)
    return max(32, min(512, 1 << max(0, rows.bit_length() - 1)))


def _sparse_chunk(plan: SparsePlan, hq: int) -> int:
    if plan.q_len == 1:
        return 1
    if plan.slash_band:  # whole row blocks: one band cover per block
        return plan.slash_band * max(1, 128 // plan.slash_band)
    if plan.block_mask is not None:
        return plan.query_block * max(1, 128 // plan.query_block)
    if plan.is_static and plan.window:
        return max(32, min(256, 1 << max(0, (plan.window // 8).bit_length() - 1)))
    return 128


_FLOOR = -80.0  # exp() is fast down to here; masked entries are zeroed exactly afterwards
_MASKED = -1e30  # additive bias of invisible keys (finite: torch's exp(-inf) takes a slow path)


def _softmax_av(s: torch.Tensor, values: torch.Tensor, keep: torch.Tensor | None, g: int):
    """Softmax over the last dim and the weighted sum of values, in float32.

    s [H, G*c, L]: scaled scores, invisible keys already biased to about -1e30 (consumed);
    values [H, L, Dv]; keep: float [Hc, c, L] with 1 for visible keys, 0 otherwise (None: all).
    Returns (o [H, G*c, Dv], lse2 [H, G*c]); a row without visible keys gives o = 0, lse = -inf.
    """
    m = s.amax(dim=-1, keepdim=True)
    p = s.sub_(m).clamp_(min=_FLOOR).exp_()  # relative error of the floor: < 1e-30
    if keep is not None:
        h, r, length = p.shape
        p.view(h, g, r // g, length).mul_(keep[:, None])
    denom = p.sum(dim=-1)
    o = torch.bmm(p, values).div_(denom.clamp_min(1e-30)[..., None])
    return o, (m.squeeze(-1) + denom.log()) * LOG2E


_TRIU: dict[int, torch.Tensor] = {}


def _dense(qh, kh, vh, off: int, scale: float, out, lse, step: int) -> None:
    h, g, n, d = qh.shape
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        c, e = r1 - r0, off + r1
        qc = qh[:, :, r0:r1].reshape(h, g * c, d) * scale
        s = torch.bmm(qc, kh[:, :e].transpose(1, 2))
        if c not in _TRIU:
            tri = torch.ones(c, c).triu_(1)
            _TRIU[c] = tri * _MASKED
        tail = s.view(h, g, c, e)[..., off + r0 :]
        tail.add_(_TRIU[c])
        m = s.amax(dim=-1, keepdim=True)
        p = s.sub_(m).clamp_(min=_FLOOR).exp_()
        tail.mul_(_TRIU[c] == 0)  # exact zeros above the diagonal
        denom = p.sum(dim=-1)
        o = torch.bmm(p, vh[:, :e]).div_(denom[..., None])
        out[:, :, r0:r1] = o.view(h, g, c, -1)
        lse[:, :, r0:r1] = ((m.squeeze(-1) + denom.log()) * LOG2E).view(h, g, c)


def _sparse(qh, kh, vh, plan: SparsePlan, vis, scale: float, out, lse, step: int) -> None:
    h, g, n, d = qh.shape
    vmask = plan.vertical_mask()
    dense_from = n - plan.dense_rows
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        c = r1 - r0
        every = plan.covers_causal or r0 >= dense_from  # every row of the chunk sees its causal range
        bands = _band_rows(plan, r0, r1) if plan.slash_band and not every else None
        idx, valid = _candidates(plan, vis, vmask, r0, r1, every or r1 > dense_from, bands)
        length = idx.shape[1]
        if length == 0:
            continue  # out stays 0, lse -inf
        if int(idx[0, -1]) - int(idx[0, 0]) == length - 1 and (idx.shape[0] == 1 or idx.stride(0) == 0):
            a = int(idx[0, 0])  # one contiguous range for every head: read it in place
            kg, vg = kh[:, a : a + length], vh[:, a : a + length]
        elif idx.shape[0] == 1:
            kg, vg = kh.index_select(1, idx[0]), vh.index_select(1, idx[0])
        else:
            kg = kh.gather(1, idx[..., None].expand(-1, -1, d))
            vg = vh.gather(1, idx[..., None].expand(-1, -1, vh.shape[-1]))
        rows = torch.arange(r0, r1)
        keep = _row_mask(plan, rows, idx, valid, vmask, every, dense_from, bands).float()  # [Hc, c, L]
        qc = qh[:, :, r0:r1].reshape(h, g * c, d) * scale
        s = torch.bmm(qc, kg.transpose(1, 2))
        s.view(h, g, c, length).add_(((keep - 1.0) * -_MASKED)[:, None])
        o, l2 = _softmax_av(s, vg, keep, g)
        out[:, :, r0:r1] = o.view(h, g, c, -1)
        lse[:, :, r0:r1] = l2.view(h, g, c)


def _band_rows(plan: SparsePlan, r0: int, r1: int):
    """(cover bool [H, c, off + r1], col_limit [H, c, 1]) of rows [r0, r1) under slash bands."""
    B, e = plan.slash_band, plan.query_offset + r1
    rows = torch.arange(r0, r1)
    bands = plan.bands()
    cover = bands.cover(r0 // B, (r1 - 1) // B + 1, e)[:, rows // B - r0 // B]
    return cover, bands.col_limit[:, rows // B, None]


def _candidates(plan: SparsePlan, vis, vmask, r0: int, r1: int, whole: bool, bands=None):
    """Keys some row in [r0, r1) may see: idx [Hc, L] (Hc = 1 when shared by all heads), valid."""
    off, H = plan.query_offset, plan.num_heads
    p0, e = off + r0, off + r1
    if whole:
        ranges = [(0, e)]
    else:
        ranges = [(0, min(plan.sink, e))] if plan.sink else []
        if plan.window:
            ranges.append((max(0, p0 - plan.window + 1), e))
    if vis is None and (whole or plan.is_static):
        merged: list[list[int]] = []
        for a, b in sorted(r for r in ranges if r[1] > r[0]):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        parts = [torch.arange(a, b) for a, b in merged] or [torch.zeros(0, dtype=torch.long)]
        return torch.cat(parts)[None], None
    cand = torch.zeros(H, e, dtype=torch.bool)
    for a, b in ranges:
        cand[:, a:b] = True
    if not whole:
        if vmask is not None:
            cand |= vmask[:, :e]
        if bands is not None:
            cand |= bands[0].any(dim=1)
        elif plan.slash is not None:
            cand |= _slash_cover(plan.slash, p0, e - 1, e)
        if plan.block_mask is not None:
            bs, qb = plan.block_size, plan.query_block
            blocks = plan.block_mask[:, r0 // qb : (r1 - 1) // qb + 1].any(dim=1)
            cand |= blocks.repeat_interleave(bs, dim=1)[:, :e]
    if vis is not None:
        cand &= vis[:, :e]
    present = cand.any(dim=0).nonzero()
    if present.numel():
        a, b = int(present[0]), int(present[-1]) + 1
        if 2 * int(cand.sum()) >= H * (b - a):  # dense enough: one shared range beats a gather
            valid = cand[:, a:b]
            return torch.arange(a, b).expand(H, -1), (None if bool(valid.all()) else valid)
    return _pack(cand)


def _slash_cover(slash: torch.Tensor, p0: int, p1: int, e: int) -> torch.Tensor:
    """bool [H, e]: keys p - o for some row position p in [p0, p1] and slash offset o."""
    valid = (slash >= 0) & (slash <= p1)
    start = torch.where(valid, (p0 - slash).clamp(min=0), e)
    stop = torch.where(valid, p1 - slash + 1, e)
    diff = torch.zeros(slash.shape[0], e + 1, dtype=torch.int32)
    ones = valid.to(torch.int32)
    diff.scatter_add_(1, start, ones)
    diff.scatter_add_(1, stop, -ones)
    return diff.cumsum(dim=1)[:, :e] > 0


def _pack(cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """bool [H, e] -> per-head sorted key indices idx [H, L] (padded with 0) and valid [H, L]."""
    counts = cand.sum(dim=1)
    length = int(counts.max()) if counts.numel() else 0
    heads, keys = cand.nonzero(as_tuple=True)
    starts = counts.cumsum(0) - counts
    idx = torch.zeros(cand.shape[0], length, dtype=torch.long)
    idx[heads, torch.arange(keys.numel()) - starts[heads]] = keys
    valid = torch.arange(length)[None, :] < counts[:, None]
    return idx, (None if bool(valid.all()) else valid)


def _slash_rows(slash: torch.Tensor, pos: torch.Tensor, idx: torch.Tensor, valid, kv_len: int) -> torch.Tensor:
    """bool [H, c, L]: gathered key idx[h, l] lies on one of head h's slash diagonals of row c.

    Scatters row by offset (O(c * ns)) through an inverse index instead of testing every key.
    """
    hc, length = idx.shape
    inverse = torch.full((hc, kv_len + 1), length, dtype=torch.long)
    cols = torch.arange(length).expand(hc, -1)
    if valid is not None:
        cols = torch.where(valid, cols, length)
    inverse.scatter_(1, torch.where(cols < length, idx, kv_len), cols)
    keys = pos[None, :, None] - slash[:, None, :]  # [H, c, ns]
    keys = torch.where((slash[:, None, :] >= 0) & (keys >= 0), keys, kv_len)
    at = inverse.gather(1, keys.reshape(hc, -1)).view(hc, pos.numel(), -1)
    out = torch.zeros(hc, pos.numel(), length + 1, dtype=torch.bool)
    out.scatter_(2, at, True)
    return out[..., :length]


def _row_mask(plan: SparsePlan, rows, idx, valid, vmask, every: bool, dense_from: int, bands=None) -> torch.Tensor:
    """bool [Hc, c, L]: exactly which gathered keys each row of the chunk sees."""
    if not every and idx.shape[0] == 1 and not plan.is_static:  # keys shared, but per-head components
        idx = idx.expand(plan.num_heads, -1)
        valid = None if valid is None else valid.expand(plan.num_heads, -1)
    pos = (plan.query_offset + rows)[None, :, None]  # [1, c, 1]
    j = idx[:, None, :]  # [Hc, 1, L]
    allowed = j <= pos
    if not every:
        comp = j < plan.sink
        if plan.window:
            comp = comp | (j > pos - plan.window)
        if plan.dense_rows:
            comp = comp | (rows >= dense_from)[None, :, None]
        c = rows.numel()
        if bands is not None:
            cover, limit = bands
            comp = comp | cover.gather(2, idx[:, None, :].expand(-1, c, -1))
            if vmask is not None:
                comp = comp | (vmask.gather(1, idx)[:, None, :] & (j < limit))
        else:
            if vmask is not None:
                comp = comp | vmask.gather(1, idx)[:, None, :]
            if plan.slash is not None:
                comp = comp | _slash_rows(plan.slash, pos.view(-1), idx, valid, plan.kv_len)
        if plan.block_mask is not None:
            bs = plan.block_size
            per_row = plan.block_mask[:, rows // plan.query_block]  # [H, c, nkb]
            comp = comp | per_row.gather(2, (idx // bs)[:, None, :].expand(-1, c, -1))
        allowed = allowed & comp
    if valid is not None:
        allowed = allowed & valid[:, None, :]
    return allowed

"""Exact attention over a `SparsePlan` on CUDA through FlashInfer: the GPU executor.

Same contract as `kvmethods.torch_executor.attend` (which is its oracle): out [q_len, Hq, Dv] in
q's dtype, 0 for a row that sees no key; lse [q_len, Hq] float32, base-2 log-sum-exp, -inf for a
row that sees no key. It computes one request in one layer per call (the SGLang backend calls it
per request and per layer), with `flashinfer.single_prefill_with_kv_cache`:

- full plan: one causal call;
- static plan (sink / window / dense rows, no visibility): a causal call with
  `window_left = window - 1` for the rows before the dense rows, a custom-mask call for the sink
  keys a row's window does not already cover, merged with `flashinfer.merge_state_in_place`,
  and one causal call for the dense rows;
- any other plan: per plan head (masks differ per head; a plan head is a KV head or a query head),
  that head's query rows against its KV head's K/V with a boolean custom mask, in chunks of rows
  built on the device (MInference's slash bands from their ranges, Quest's per-row chunks from the
  block mask, as `SparsePlan.rows_mask` defines them).

FlashInfer facts this relies on (checked in FlashInfer's source, flashinfer-ai/flashinfer):
- LSE is base 2: kernels store `log2(d) + m` with logits pre-scaled by `sm_scale * log2(e)`
  (FA2 prefill.cuh, FA3 hopper/attention_updater.cuh `row_max * sm_scale_log2 + log2(sum)`),
  and cascade.cuh's MergeStateKernel notes "Both s_a and s_b are logsumexp values with base 2".
  The torch executor's LSE is base 2 too, so no conversion is needed.
- `custom_mask` is bool [qo_len, kv_len], True = attend, one mask shared by all heads; it is
  flattened row-major and packed with `packbits(..., bitorder="little")` (prefill.py), and the
  kernel reads bit `q_idx * kv_len + kv_idx`. `causal` is ignored when a mask is given.
- Causal alignment is bottom-right (row i at kv_len - qo_len + i); `window_left` keeps keys with
  `kv_idx + qo_len + window_left >= kv_len + q_idx`, i.e. kv_idx >= pos - window_left.
- A row whose mask is all False is not reported as empty (older kernels fill masked logits with
  -5e4, giving a uniform average), so such rows are fixed up here from the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kvmethods.plan import SparsePlan

__all__ = ["attend", "require_cuda", "StaticSplit", "split_static", "sink_mask", "PlanMasks", "row_chunks"]

# Mask elements (rows x keys) per custom-mask call: bounds the device mask and its int64 slash
# offsets (8 bytes each: 512 MiB), and keeps the kernel's 32-bit bit index far from overflow.
MASK_ELEMS = 1 << 26


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan, *, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q [q_len, Hq, D] over k [kv_len, Hkv, D], v [kv_len, Hkv, Dv] per `plan`.

    All tensors on one CUDA device, fp16 or bf16. Returns (out [q_len, Hq, Dv] in q's dtype,
    lse [q_len, Hq] float32, base 2); rows that see no key give out 0 and lse -inf.
    """
    q_len, hq = _check(q, k, v, plan)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # row slices below stay contiguous
    if q_len == 0:
        return q.new_zeros(0, hq, v.shape[2]), torch.zeros(0, hq, dtype=torch.float32, device=q.device)
    if plan.is_full:
        return _prefill(q, k, v, scale, causal=True)
    if plan.is_static and plan.visibility is None and plan.window >= 1:
        return _static(q, k, v, plan, scale)
    return _general(q, k, v, plan, scale)


# -- pure-torch pieces (device-agnostic, unit-tested on CPU) -----------------------------------


@dataclass(frozen=True)
class StaticSplit:
    """How a static plan (sink, window >= 1, dense rows) splits into FlashInfer calls.

    Rows [0, dense_from) attend keys [0, window_keys) with causal + window_left = window - 1;
    rows [sink_from, dense_from) also attend sink keys [0, sink_keys) outside their window
    (`sink_mask`); rows [dense_from, q_len) attend every causal key.
    """

    dense_from: int
    window_keys: int
    sink_from: int
    sink_keys: int

    @property
    def has_sink(self) -> bool:
        return self.sink_from < self.dense_from and self.sink_keys > 0


def split_static(plan: SparsePlan) -> StaticSplit:
    if not (plan.is_static and plan.window >= 1):
        raise ValueError("split_static needs a plan with only sink / window (>= 1) / dense_rows")
    off = plan.query_offset
    dense_from = max(0, plan.q_len - plan.dense_rows)
    # Row i (position p = off + i) has sink keys outside its window iff p - window + 1 > 0.
    sink_from = min(dense_from, max(0, plan.window - off))
    sink_keys = min(plan.sink, max(0, off + dense_from - plan.window)) if plan.sink else 0
    return StaticSplit(dense_from, off + dense_from, sink_from, sink_keys)


def sink_mask(plan: SparsePlan, split: StaticSplit, device=None) -> torch.Tensor:
    """bool [dense_from - sink_from, sink_keys]: sink keys left of each row's window (j <= p - window).

    Disjoint from the window part by construction, and every row has at least key 0.
    """
    rows = torch.arange(split.sink_from, split.dense_from, device=device)
    first_in_window = plan.query_offset + rows - plan.window + 1  # [n]
    return torch.arange(split.sink_keys, device=device)[None, :] < first_in_window[:, None]


def row_chunks(plan: SparsePlan, max_elems: int = MASK_ELEMS) -> list[tuple[int, int]]:
    """Row ranges [start, end) whose per-head mask [end - start, query_offset + end] fits max_elems."""
    rows = max(1, max_elems // max(1, plan.kv_len))
    return [(a, min(plan.q_len, a + rows)) for a in range(0, plan.q_len, rows)]


class PlanMasks:
    """The exact per-head masks of a plan (`SparsePlan.rows_mask` semantics), built with torch on
    `device` so long prompts do not build masks on the CPU. Keys past the chunk's last row
    position are never visible, so a chunk's mask stops at query_offset + end."""

    def __init__(self, plan: SparsePlan, device=None):
        self.plan, self.device = plan, device
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        self.vertical = move(plan.vertical_mask())
        self.slash = move(plan.slash_mask())
        self.block = move(plan.block_mask)
        self.visibility = move(plan.visibility)
        self.bands = plan.bands() if plan.slash_band else None  # ranges on the host, covers on `device`
        self.col_limit = move(self.bands.col_limit) if self.bands is not None else None

    def head(self, h: int, start: int, end: int) -> torch.Tensor:
        """bool [end - start, query_offset + end]: what plan head h's rows [start, end) see."""
        p, dev = self.plan, self.device
        e = p.query_offset + end
        rows = torch.arange(start, end, device=dev)
        pos = (p.query_offset + rows)[:, None]
        j = torch.arange(e, device=dev)
        mask = j[None, :] <= pos
        if not p.covers_causal:
            comp = (j < p.sink)[None, :].expand(end - start, e)
            if p.window:
                comp = comp | (j[None, :] > pos - p.window)
            if p.dense_rows:
                comp = comp | (rows >= p.q_len - p.dense_rows)[:, None]
            if self.bands is not None:
                B = p.slash_band
                b0 = start // B
                cover = self.bands.cover(b0, (end - 1) // B + 1, e, device=dev, head=h)
                comp = comp | cover.index_select(0, rows // B - b0)
                if self.vertical is not None:
                    limit = self.col_limit[h].index_select(0, rows // B)
                    comp = comp | (self.vertical[h, :e][None, :] & (j[None, :] < limit[:, None]))
            else:
                if self.vertical is not None:
                    comp = comp | self.vertical[h, :e][None, :]
                if self.slash is not None:
                    offs = (pos - j[None, :]).clamp_(0, p.kv_len - 1)
                    comp = comp | self.slash[h][offs]
            if self.block is not None:
                qb, bs = p.query_block, p.block_size
                comp = comp | self.block[h].index_select(0, rows // qb).index_select(1, j // bs)
            mask &= comp
        if self.visibility is not None:
            mask &= self.visibility[h, :e][None, :]
        return mask


# -- FlashInfer calls --------------------------------------------------------------------------


def _flashinfer():
    import flashinfer  # lazy: this module must import on machines without it

    return flashinfer


def _prefill(q, k, v, scale, **kw):
    out, lse = _flashinfer().single_prefill_with_kv_cache(q, k, v, sm_scale=scale, return_lse=True, **kw)
    return out, lse.float()


def _static(q, k, v, plan: SparsePlan, scale: float):
    s = split_static(plan)
    out = q.new_empty(q.shape[0], q.shape[1], v.shape[2])
    lse = torch.empty(q.shape[0], q.shape[1], dtype=torch.float32, device=q.device)
    d0 = s.dense_from
    if d0 > 0:
        # The row prefix [0, d0) keeps bottom-right alignment against the key prefix [0, off + d0).
        o_w, l_w = _prefill(
            q[:d0], k[: s.window_keys], v[: s.window_keys], scale, causal=True, window_left=plan.window - 1
        )
        if s.has_sink:
            a, n = s.sink_from, s.sink_keys
            mask = sink_mask(plan, s, device=q.device)
            o_s, l_s = _prefill(q[a:d0], k[:n], v[:n], scale, custom_mask=mask, causal=False)
            # Both sides see >= 1 key on these rows, so merge_state never meets -inf on both.
            # Row slices of contiguous tensors are contiguous: merged in place into o_w / l_w.
            o_w, l_w = o_w.contiguous(), l_w.contiguous()
            _flashinfer().merge_state_in_place(o_w[a:], l_w[a:], o_s.contiguous(), l_s.contiguous())
        out[:d0], lse[:d0] = o_w, l_w
    if d0 < plan.q_len:
        # A row suffix keeps bottom-right alignment against all keys: the dense rows.
        out[d0:], lse[d0:] = _prefill(q[d0:], k, v, scale, causal=True)
    return out, lse


def _general(q, k, v, plan: SparsePlan, scale: float):
    q_len, hq, _ = q.shape
    num_heads, hkv = plan.num_heads, k.shape[1]
    g = hq // num_heads  # query heads per plan head
    out = q.new_zeros(q_len, hq, v.shape[2])
    lse = torch.full((q_len, hq), float("-inf"), dtype=torch.float32, device=q.device)
    masks = PlanMasks(plan, q.device)
    chunks = row_chunks(plan)
    for h in range(num_heads):
        heads = slice(h * g, (h + 1) * g)
        kv_head = h // (num_heads // hkv)
        k_h, v_h = k[:, kv_head : kv_head + 1].contiguous(), v[:, kv_head : kv_head + 1].contiguous()  # [kv, 1, D]
        for r0, r1 in chunks:
            mask = masks.head(h, r0, r1)
            seen = mask.any(dim=1)
            if not bool(seen.any()):
                continue  # out stays 0, lse -inf
            e = mask.shape[1]
            o, l = _prefill(
                q[r0:r1, heads].contiguous(), k_h[:e], v_h[:e], scale, custom_mask=mask.contiguous(), causal=False
            )
            empty = ~seen  # FlashInfer gives garbage there, not 0 / -inf
            o[empty] = 0
            l[empty] = float("-inf")
            out[r0:r1, heads], lse[r0:r1, heads] = o, l
    return out, lse


def _check(q, k, v, plan: SparsePlan) -> tuple[int, int]:
    from kvmethods.torch_executor import check_inputs

    q_len, hq, _ = check_inputs(q, k, v, plan)
    if not (k.device == q.device and v.device == q.device):
        raise ValueError(f"attend: q, k, v must be on one CUDA device, got {q.device}, {k.device}, {v.device}")
    require_cuda(q.device)
    if q.dtype not in (torch.float16, torch.bfloat16) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(
            f"attend: FlashInfer needs fp16 or bf16 q, k, v of one dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    return q_len, hq


def require_cuda(device: torch.device) -> None:
    """FlashInfer's kernels run on CUDA devices only."""
    if device.type != "cuda":
        raise ValueError(f"attend: q, k, v must be on one CUDA device, got {device}")

"""The torch executor against plain masked softmax attention in float64 on `plan.dense_mask()`."""

from __future__ import annotations

import math

import pytest
import torch

from kvmethods import SparsePlan, get_method, parse_method
from kvmethods.torch_executor import attend, merge_state

HQ, HKV, D = 4, 2, 16
SCALE = 1 / math.sqrt(D)


def tensors(q_len, kv_len, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(q_len, HQ, D, generator=g) * 2
    k = torch.randn(kv_len, HKV, D, generator=g)
    v = torch.randn(kv_len, HKV, D, generator=g)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def reference(q, k, v, mask, scale=SCALE):
    """float64 masked softmax; mask bool [H, q_len, kv_len] with H the KV heads or the query heads.
    Rows without keys: out 0, lse -inf."""
    group = q.shape[1] // k.shape[1]
    per_mask = q.shape[1] // mask.shape[0]
    out = torch.zeros(q.shape[0], q.shape[1], v.shape[2], dtype=torch.float64)
    lse = torch.full((q.shape[0], q.shape[1]), -math.inf, dtype=torch.float64)
    for h in range(q.shape[1]):
        kv_h = h // group
        s = (q[:, h].double() @ k[:, kv_h].double().T) * scale
        s = s.masked_fill(~mask[h // per_mask], -math.inf)
        row_lse = torch.logsumexp(s, dim=-1)
        seen = torch.isfinite(row_lse)
        p = torch.exp(s[seen] - row_lse[seen, None])
        out[seen, h] = p @ v[:, kv_h].double()
        lse[:, h] = row_lse / math.log(2)
    return out, lse


def check(q, k, v, plan, tol=1e-4, **kw):
    out, lse = attend(q, k, v, plan, scale=SCALE, **kw)
    ref_out, ref_lse = reference(q, k, v, plan.dense_mask())
    assert out.shape == (q.shape[0], HQ, D) and out.dtype == q.dtype
    assert lse.shape == (q.shape[0], HQ) and lse.dtype == torch.float32
    assert (out.double() - ref_out).abs().max() < tol
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse))
    fin = torch.isfinite(ref_lse)
    if fin.any():
        assert (lse.double()[fin] - ref_lse[fin]).abs().max() < tol
    return out, lse


def random_plan(kind, q_len, kv_len, seed):
    g = torch.Generator().manual_seed(seed)
    H = HKV
    vert = torch.randint(0, kv_len, (H, 5), generator=g)
    vert[0, -1] = -1  # padding
    slash = torch.randint(0, kv_len, (H, 6), generator=g)
    slash[:, 0] = torch.tensor([0, 3])
    bs = 8
    blocks = torch.rand(H, math.ceil(q_len / bs), math.ceil(kv_len / bs), generator=g) < 0.25
    vis = torch.rand(H, kv_len, generator=g) < 0.7
    per_row = torch.rand(H, q_len, math.ceil(kv_len / bs), generator=g) < 0.2
    plans = {
        "full": SparsePlan.full(q_len, kv_len, H),
        "a_shape": SparsePlan(q_len, kv_len, H, sink=4, window=9),
        "window_only": SparsePlan(q_len, kv_len, H, window=5),
        "tri_shape": SparsePlan(q_len, kv_len, H, sink=3, window=6, dense_rows=7),
        "vertical_slash": SparsePlan(q_len, kv_len, H, vertical=vert, slash=slash),
        "blocks": SparsePlan(q_len, kv_len, H, block_mask=blocks, block_size=bs),
        "everything": SparsePlan(
            q_len, kv_len, H, sink=2, window=4, vertical=vert, slash=slash,
            block_mask=blocks, block_size=bs, dense_rows=3, visibility=vis,
        ),  # fmt: skip
        "full_visibility": SparsePlan.full(q_len, kv_len, H).with_visibility(vis),
        # keys shared by the chunk's rows (dense rows) while verticals and slashes differ per head
        "vertical_slash_dense_rows": SparsePlan(q_len, kv_len, H, vertical=vert, slash=slash, dense_rows=5),
        "bands": SparsePlan(q_len, kv_len, H, vertical=vert, slash=slash, slash_band=8),
        "bands_everything": SparsePlan(
            q_len, kv_len, H, sink=2, window=4, vertical=vert, slash=slash, slash_band=8,
            block_mask=blocks, block_size=bs, dense_rows=3, visibility=vis,
        ),  # fmt: skip
        "row_blocks": SparsePlan(q_len, kv_len, H, block_mask=per_row, block_size=bs, query_block_size=1),
        "a_shape_visibility": SparsePlan(q_len, kv_len, H, sink=4, window=9, visibility=vis),
        "nothing_visible": SparsePlan(q_len, kv_len, H, window=3).with_visibility(
            torch.zeros(H, kv_len, dtype=torch.bool)
        ),
    }
    return plans[kind]


KINDS = [
    "full", "a_shape", "window_only", "tri_shape", "vertical_slash", "blocks",
    "everything", "full_visibility", "a_shape_visibility", "nothing_visible",
    "vertical_slash_dense_rows", "bands", "bands_everything", "row_blocks",
]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("q_len", "kv_len"), [(40, 40), (33, 90), (1, 70), (150, 150)])
def test_executor_matches_dense_reference(kind, q_len, kv_len):
    q, k, v = tensors(q_len, kv_len, seed=q_len + kv_len)
    plan = random_plan(kind, q_len, kv_len, seed=kv_len)
    check(q, k, v, plan)
    check(q, k, v, plan, chunk_size=7)  # many chunks, unaligned with blocks and windows


@pytest.mark.parametrize("name", ["a_shape", "tri_shape", "minference", "flexprefill"])
@pytest.mark.parametrize(("q_len", "kv_len"), [(300, 300), (200, 420), (700, 700)])
def test_executor_on_method_plans(name, q_len, kv_len):
    q, k, v = tensors(q_len, kv_len, seed=5)
    fields = {
        "a_shape": dict(budget=64, sink=8),
        "tri_shape": dict(budget=64, sink=8, last_q=20),
        "minference": dict(budget=90, vertical_size=30, last_q=32),
        "flexprefill": dict(budget=32, block_size=32, gamma=0.6, tau=1.0),
    }[name]
    plan = get_method(name, **fields, follow_ups="sparse").prefill_plan(q, k)
    assert plan.density() < 0.95
    check(q, k, v, plan)


def test_executor_bfloat16_inputs():
    q, k, v = tensors(64, 100, seed=3, dtype=torch.bfloat16)
    plan = random_plan("everything", 64, 100, seed=3)
    out, _ = attend(q, k, v, plan, scale=SCALE)
    ref_out, _ = reference(q, k, v, plan.dense_mask())
    assert out.dtype == torch.bfloat16
    assert (out.double() - ref_out).abs().max() < 2e-2  # bf16 output rounding only


def test_executor_rejects_mismatched_plan():
    q, k, v = tensors(10, 20)
    with pytest.raises(ValueError, match="the plan is for q_len=10, kv_len=30"):
        attend(q, k, v, SparsePlan.full(10, 30, HKV), scale=SCALE)
    with pytest.raises(ValueError, match="Hq divisible by Hkv"):
        attend(q[:, :3], k, v, SparsePlan.full(10, 20, HKV), scale=SCALE)


@pytest.mark.parametrize(("q_len", "kv_len"), [(30, 30), (1, 80), (25, 64)])
def test_merge_state_of_two_halves_equals_union(q_len, kv_len):
    q, k, v = tensors(q_len, kv_len, seed=11)
    g = torch.Generator().manual_seed(kv_len)
    part = torch.rand(HKV, kv_len, generator=g) < 0.5
    part[:, 0] = True  # row 0 of a no-prefix prefill sees only key 0: the other half is empty (-inf)
    base = SparsePlan(q_len, kv_len, HKV, sink=3, window=11)
    o1, s1 = attend(q, k, v, base.with_visibility(part), scale=SCALE)
    o2, s2 = attend(q, k, v, base.with_visibility(~part), scale=SCALE)
    if q_len == kv_len:
        assert torch.isinf(s2).any()
    merged, lse = merge_state(o1, s1, o2, s2)
    whole, whole_lse = attend(q, k, v, base, scale=SCALE)
    assert (merged - whole).abs().max() < 1e-5
    assert (lse - whole_lse).abs().max() < 1e-5
    # merging with an empty side is the identity
    empty_o, empty_s = torch.zeros_like(whole), torch.full_like(whole_lse, -math.inf)
    same, same_lse = merge_state(whole, whole_lse, empty_o, empty_s)
    assert torch.allclose(same, whole) and torch.equal(same_lse, whole_lse)
    nothing, nothing_lse = merge_state(empty_o, empty_s, empty_o, empty_s)
    assert torch.equal(nothing, empty_o) and torch.isinf(nothing_lse).all()


def test_composite_lifecycle_prefill_compress_decode():
    """The SCBench lifecycle a backend runs: sparse prefill, compress once, decode on what is left."""
    args = ["budget=48", "window=8", "minference.budget=70", "vertical_size=20", "min_q_len=32", "last_q=16"]
    method = parse_method("minference+snapkv", args)
    assert method.replace(budget=40).kv.budget == 40
    n = 600  # MInference's kernel attends 64-key bands per 64-row block: sparse only past a few blocks
    q, k, v = tensors(n, n, seed=9)
    plan = method.prefill_plan(q, k, layer=0, num_layers=2)
    assert plan.slash_band == 64 and plan.density() < 0.9
    check(q, k, v, plan)
    keep = method.compress(q, k, layer=0, num_layers=2)
    hq = q.shape[1]
    assert keep.sum(-1).tolist() == [48] * hq  # one selection per query head (SCBench)
    q1, k1, v1 = tensors(1, n + 1, seed=10)
    k1[:n], v1[:n] = k, v
    decode = method.decode_plan(q1, k1).with_visibility(torch.cat([keep, torch.ones(hq, 1, dtype=torch.bool)], 1))
    assert decode.num_heads == hq
    out, _ = check(q1, k1, v1, decode)
    assert decode.visible_fraction() == pytest.approx(49 / (n + 1))
    kq, vq = get_method("a_shape+kivi").quantize_kv(k1, v1)
    assert not torch.equal(kq, k1)
    check(q1, kq, vq, decode)


def test_fused_causal_attention_equals_the_executor_on_a_fresh_full_prefill():
    from kvmethods.plan import SparsePlan
    from kvmethods.torch_executor import attend, causal_attention

    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(70, h, 16, generator=gen) for h in (6, 2, 2))
    want, _ = attend(q, k, v, SparsePlan.full(70, 70, 2), scale=0.3)
    torch.testing.assert_close(causal_attention(q, k, v, scale=0.3), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="q_len == kv_len"):
        causal_attention(q[:5], k, v, scale=0.3)


@pytest.mark.parametrize("kind", ["vertical_slash", "blocks", "tri_shape", "everything", "bands", "row_blocks"])
def test_per_query_head_plans(kind):
    """A plan indexed by query heads (SCBench's GQA handling) runs exactly; a per-KV-head plan
    expanded to the query heads gives the same output as the plan itself."""
    q, k, v = tensors(40, 90, seed=21)
    plan = random_plan(kind, 40, 90, seed=22)
    expanded = plan.expand_heads(HQ)
    assert expanded.num_heads == HQ
    out_kv, _ = check(q, k, v, plan)
    out_q, _ = check(q, k, v, expanded)
    torch.testing.assert_close(out_q, out_kv)
    g = torch.Generator().manual_seed(23)
    per_head = expanded.with_visibility(torch.rand(HQ, 90, generator=g) > 0.3)  # differs within a group
    check(q, k, v, per_head)
    with pytest.raises(ValueError, match="multiple"):
        plan.expand_heads(3)

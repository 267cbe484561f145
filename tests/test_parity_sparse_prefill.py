"""Sparse prefill against SCBench's own code (microsoft/MInference fb56c91, vendored in
tests/reference/): the project's `plan.dense_mask()` per query head equals the (row, key) pairs the
reference kernels attend, on the same Q/K with GQA (8 query heads on 2 KV heads), K repeated to
every query head as SCBench does, at lengths with n % 128 != 0 and n % 64 != 0."""

from __future__ import annotations

import pytest
import torch

from kvmethods import get_method
from tests.reference import flexprefill_blocks as flex_ref
from tests.reference import minference_vertical_slash as mi_ref
from tests.reference import streaming_masks as stream_ref

HQ, HKV, D = 8, 2, 64
G = HQ // HKV


def qkv(n, seed=0, same_in_group=False):
    """Q/K with the structure of LLM attention (a sink, locality, a few heavy columns), float32."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, HKV if same_in_group else HQ, D, generator=g)
    if same_in_group:
        q = q.repeat_interleave(G, dim=1)
    k = torch.randn(n, HKV, D, generator=g)
    pos = torch.arange(n, dtype=torch.float32)
    freqs = torch.rand(8, generator=g) * 0.05
    local = torch.cat([torch.cos(pos[:, None] * freqs), torch.sin(pos[:, None] * freqs)], 1) * 2.0
    q[:, :, :16] += local[:, None]
    k[:, :, :16] += local[:, None]
    k[:3, :, 16:24] += 2.5  # attention sinks
    heavy = torch.randint(0, n, (6,), generator=g)
    k[heavy, :, 24:32] += 2.0
    q[:, :, 16:32] += 0.8
    return q, k, torch.randn(n, HKV, D, generator=g)


def per_head(x):
    """[n, H, D] -> [1, 1, n, D] for each query head (K/V repeated to the query heads)."""
    x = x.repeat_interleave(HQ // x.shape[1], dim=1)
    return [x[:, h][None, None] for h in range(HQ)]


# -- MInference --------------------------------------------------------------------------------


def minference_reference(q, k, v, vertical_size, slash_size):
    """bool [Hq, n, n]: SCBench's vertical_and_slash_kernel per query head."""
    masks = [mi_ref.vertical_and_slash_kernel(qh, kh, vh, vertical_size, slash_size)[0, 0]
             for qh, kh, vh in zip(per_head(q), per_head(k), per_head(v))]  # fmt: skip
    return torch.stack(masks)


@pytest.mark.parametrize("n", [300, 513, 700])
@pytest.mark.parametrize(("vertical_size", "slash_size"), [(40, 120), (64, 200), (512, 2048)])
def test_minference_matches_scbench_kernel(n, vertical_size, slash_size):
    q, k, v = qkv(n, seed=n)
    plan = get_method("minference", budget=vertical_size + slash_size, vertical_size=vertical_size).prefill_plan(q, k)
    assert plan.num_heads == HQ and plan.slash_band == 64
    ref = minference_reference(q, k, v, vertical_size, slash_size)
    assert torch.equal(plan.dense_mask(), ref)
    if (n, slash_size) == (700, 120):
        assert ref.sum() < 0.8 * HQ * n * (n + 1) / 2  # the comparison is not trivially dense


@pytest.mark.parametrize("seed", range(12))
def test_slash_bands_match_convert_vertical_slash_indexes(seed):
    """Plans with arbitrary offsets (gaps of one to two bands, offsets near each block's end,
    no offset 0) against the kernel's index conversion and its Triton masks."""
    import random

    from kvmethods import SparsePlan

    rng = random.Random(seed)
    n = rng.choice([300, 513, 700])
    slash, vertical = [], []
    for _ in range(2):
        o, offs = rng.randint(0, 20), []
        while o < n:
            offs.append(o)
            o += rng.choice([1, 7, 63, 64, 65, 90, 127, 128, 129, 250])
        slash.append(offs)
        vertical.append(sorted(rng.sample(range(n), rng.randint(1, 40))))
    width = max(map(len, slash))
    plan = SparsePlan(
        n, n, 2, slash_band=64,
        slash=torch.tensor([s + [-1] * (width - len(s)) for s in slash]),
        vertical=torch.tensor([v + [v[0]] * (40 - len(v)) for v in vertical]),
    )  # fmt: skip
    for h in range(2):
        s_idx = torch.tensor(sorted(slash[h], reverse=True), dtype=torch.int32)[None, None]
        v_idx = torch.tensor(vertical[h], dtype=torch.int32)[None, None]
        counts = mi_ref.convert_vertical_slash_indexes(torch.tensor([n]), v_idx, s_idx, n, 64, 64)
        want = mi_ref.attended_mask(torch.tensor([n]), *counts, n, 64, 64)[0, 0]
        assert torch.equal(plan.dense_mask()[h], want), h


def test_minference_bands_are_wider_than_diagonals():
    """The kernel's bands attend many more keys than the exact diagonals they come from."""
    q, k, _ = qkv(700, seed=3)
    kernel = get_method("minference", budget=170, vertical_size=50).prefill_plan(q, k)
    exact = get_method("minference", budget=170, vertical_size=50, slash_mode="exact").prefill_plan(q, k)
    assert torch.equal(kernel.slash, exact.slash) and torch.equal(kernel.vertical, exact.vertical)
    assert bool((exact.dense_mask() <= kernel.dense_mask()).all())
    assert kernel.density() > 1.5 * exact.density()


def test_minference_kv_heads_use_scbench_kernel_on_group_scores():
    """heads="kv": one pattern per KV head from the group-averaged attention, attended as the kernel does."""
    n = 513
    q, k, v = qkv(n, seed=7)
    plan = get_method("minference", budget=150, vertical_size=40, heads="kv").prefill_plan(q, k)
    assert plan.num_heads == HKV
    kr = k.repeat_interleave(G, dim=1)
    for h in range(HKV):
        qk = torch.einsum("mhd,nhd->hmn", q[-64:, h * G : (h + 1) * G], kr[:, h * G : (h + 1) * G]) / D**0.5
        qk[:, :, -64:] = qk[:, :, -64:].masked_fill(~mi_ref.LAST_Q_MASK[0], float("-inf"))
        probs = torch.softmax(qk, -1).mean(0)[None, None]  # [1, 1, 64, n]
        vertical = probs.sum(-2, keepdim=True)
        vertical[..., :30] = torch.inf
        slash = mi_ref.sum_all_diagonal_matrix(probs)[..., :-63]
        slash[..., -100:] = torch.inf
        v_idx, s_idx = vertical.topk(40, -1).indices, (n - 1) - slash.topk(110, -1).indices
        shape_only = torch.zeros(1, 1, n, D)
        ref = mi_ref.vertical_slash_sparse_attention(shape_only, shape_only, shape_only, v_idx, s_idx)
        assert torch.equal(plan.dense_mask()[h], ref[0, 0]), h


@pytest.mark.parametrize(("n", "rows"), [(700, 316), (640, 128)])
def test_minference_sparse_follow_up_equals_the_rows_of_a_fresh_prefill(n, rows):
    """follow_ups="sparse": an extend whose cached prefix ends on a 64-row block edge plans exactly
    the last rows of the fresh prefill (the pattern comes from the same last 64 queries)."""
    q, k, v = qkv(n, seed=n + 1)
    method = get_method("minference", budget=160, vertical_size=40)
    assert method.prefill_plan(q[-rows:], k).is_full  # SCBench: a follow-up attends densely
    plan = method.replace(follow_ups="sparse").prefill_plan(q[-rows:], k)
    ref = minference_reference(q, k, v, 40, 120)
    assert (n - rows) % 64 == 0 and torch.equal(plan.dense_mask(), ref[:, n - rows :])


# -- FlexPrefill -------------------------------------------------------------------------------


def flexprefill_reference(q, k, v, bs, **config):
    """bool [Hq, n, n] or None (dense): SCBench's FlexPrefill on K/V repeated to every head.

    SCBench's `flexprefill_forward` passes its block size positionally into `gqa_interleave`, so
    it always runs with blocks of 128; other block sizes call `flex_prefill_attention` directly."""
    flex_ref.causal_mask = None  # the reference caches it for the first block size it sees
    to_bhnd = lambda x: x.repeat_interleave(HQ // x.shape[1], dim=1).transpose(0, 1)[None]  # noqa: E731
    if bs == 128:
        kind, block_idx = flex_ref.flexprefill_forward(
            to_bhnd(q), to_bhnd(k), to_bhnd(v), {"attn_forward_config": {"block_size": bs, **config}}
        )
    else:
        to_bnhd = lambda x: to_bhnd(x).transpose(1, 2).contiguous()  # noqa: E731
        kind, block_idx = flex_ref.flex_prefill_attention(
            to_bnhd(q), to_bnhd(k), to_bnhd(v), config.get("gamma", 0.9), config.get("tau", 0.1),
            config.get("min_budget"), config.get("max_budget"), True, block_size=bs,
        )  # fmt: skip
    return None if kind == "dense" else flex_ref.block_idx_mask(block_idx, q.shape[0], bs)[0]


def test_scbench_flexprefill_ignores_its_block_size_setting():
    q, k, v = qkv(700, seed=1)
    flex_ref.causal_mask = None
    to_bhnd = lambda x: x.repeat_interleave(HQ // x.shape[1], dim=1).transpose(0, 1)[None]  # noqa: E731
    runs = [
        flex_ref.flexprefill_forward(to_bhnd(q), to_bhnd(k), to_bhnd(v), {"attn_forward_config": {"block_size": bs}})
        for bs in (64, 128)
    ]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1][0], runs[1][1][0]))
    assert torch.equal(flexprefill_reference(q, k, v, 128), get_method("flexprefill").prefill_plan(q, k).dense_mask())


FLEX_CASES = [  # (n, block size, reference config, project fields)
    (300, 128, {}, {}),  # SCBench's defaults: gamma 0.9, tau 0.1, min/max budget None
    (383, 128, {}, {}),
    (1000, 128, {}, {}),
    (1000, 64, {"tau": 1.0}, {"tau": 1.0}),  # every head query-aware
    (700, 64, {"tau": 0.0, "gamma": 0.95}, {"tau": 0.0, "gamma": 0.95}),  # every head vertical-slash
    (1000, 128, {"min_budget": 300, "max_budget": 600}, {"budget": 300, "max_budget": 600}),
    (900, 32, {"gamma": 0.6, "min_budget": 64}, {"gamma": 0.6, "budget": 64}),
]


@pytest.mark.parametrize(("n", "bs", "config", "fields"), FLEX_CASES)
def test_flexprefill_matches_scbench(n, bs, config, fields):
    q, k, v = qkv(n, seed=n + bs)
    plan = get_method("flexprefill", block_size=bs, **fields).prefill_plan(q, k)
    ref = flexprefill_reference(q, k, v, bs, **config)
    assert plan.num_heads == HQ and ref is not None
    assert torch.equal(plan.dense_mask(), ref)


def test_flexprefill_short_prompts_are_dense_as_in_scbench():
    for n, config, fields in [(256, {}, {}), (384, {"min_budget": 300}, {"budget": 300})]:
        q, k, v = qkv(n)
        assert flexprefill_reference(q, k, v, 128, **config) is None
        assert get_method("flexprefill", **fields).prefill_plan(q, k).is_full


def test_flexprefill_kv_heads_equal_query_heads_when_a_group_agrees():
    q, k, _ = qkv(900, seed=5, same_in_group=True)
    by_query = get_method("flexprefill", block_size=64, tau=0.2).prefill_plan(q, k)
    by_kv = get_method("flexprefill", block_size=64, tau=0.2, heads="kv").prefill_plan(q, k)
    assert by_kv.num_heads == HKV and by_query.num_heads == HQ
    assert torch.equal(by_kv.expand_heads(HQ).dense_mask(), by_query.dense_mask())


# -- A-shape / Tri-shape -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [300, 4000, 4100, 4500])
def test_a_shape_and_tri_shape_match_scbench(n):
    q, k, _ = qkv(n) if n <= 300 else (torch.zeros(n, HQ, 1), torch.zeros(n, HKV, 1), None)
    config = {"attn_forward_config": {}}
    a_shape = get_method("a_shape").prefill_plan(q, k)
    want = stream_ref.a_shape_kernel(n, n, config)
    assert torch.equal(a_shape.rows_mask(n - 130, n)[0], want[n - 130 :])
    assert torch.equal(a_shape.rows_mask(0, 130)[0], want[:130])
    tri = get_method("tri_shape").prefill_plan(q, k)
    want = stream_ref.tri_shape_kernel(n, n, config)
    for a, b in [(0, 130), (n - 230, n)]:
        assert torch.equal(tri.rows_mask(a, b)[0], want[a:b])

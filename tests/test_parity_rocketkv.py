"""RocketKV and RocketKV-MT against a transcription of NVlabs/RocketKV's selection
(tests/reference/rocketkv_transcribed.py): the same kept keys after the prefill (stage 1) and the
same attended keys per KV head at every decode step (stage 2), on the same tensors, with GQA
(8 query heads on 2 KV heads). Then through the `kvm` backend: eviction, per-turn selection, and
the keys each step really attends."""

from __future__ import annotations

import pytest
import torch

from kvmethods.registry import get_method
from kvmethods.rocketkv import rocket_settings
from tests.kvm_harness import BackendHarness
from tests.reference import rocketkv_transcribed as ref

HQ, HKV, D = 8, 2, 64
BUDGET, NEW = 128, 16


def _hf(x: torch.Tensor) -> torch.Tensor:
    """[n, H, D] -> the reference's [1, H, n, D]."""
    return x.transpose(0, 1)[None]


def _sets(rows: torch.Tensor) -> list[set[int]]:
    return [set(r.tolist()) - {-1} for r in rows]


def _tensors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, HQ, D, generator=g), torch.randn(n, HKV, D, generator=g),
            torch.randn(n, HKV, D, generator=g))


@pytest.mark.parametrize("seq_len,new,budget", [(616, 16, 128), (40_150, 150, 1024), (300, 150, 1024),
                                                 (131_072, 1024, 256), (5000, 0, 512)])
def test_budget_split_is_the_reference_s(seq_len, new, budget):
    want = ref.budget_split(seq_len, new, budget)
    got = rocket_settings(seq_len, budget, new)
    assert (got.prompt_budget, got.topk) == (want["prompt_budget"], want["topk"])
    assert got.compression_ratio == pytest.approx(want["compression_ratio"], abs=0)


def test_defaults_are_the_reference_s_scbench_settings():
    m = get_method("rocketkv")
    want = ref.budget_split(1000, 150, 1024)
    assert (m.window, m.kernel_size) == (want["window_size"], want["kernel_size"]) == (128, 63)
    assert get_method("rocketkv_mt").to_dict() == {**m.to_dict(), "method": "rocketkv_mt"}


@pytest.mark.parametrize("kv_len,q_len", [(600, 600), (600, 70)])
def test_stage1_keeps_the_reference_s_keys(kv_len, q_len):
    """The context's prefill (every row a query) and a short follow-up extend (fewer rows than the
    window, RocketKV-MT's re-selection): the same keys per KV head."""
    q, k, _ = _tensors(kv_len, seed=kv_len + q_len)
    q = q[-q_len:]
    m = get_method("rocketkv", budget=BUDGET, max_new_tokens=NEW)
    split = ref.budget_split(kv_len + NEW, NEW, BUDGET)
    assert m.settings(kv_len).prompt_budget == split["prompt_budget"] < kv_len
    want = ref.stage1_kept_indices(_hf(q), _hf(k), split["prompt_budget"], split["window_size"], 63)[0]
    keep = m.compress(q, k)
    assert keep.shape == (HKV, kv_len)
    assert keep.sum(dim=1).tolist() == [split["prompt_budget"]] * HKV
    assert _sets(keep.nonzero()[:, 1].view(HKV, -1)) == _sets(want)
    mt = get_method("rocketkv_mt", budget=BUDGET, max_new_tokens=NEW)
    assert torch.equal(mt.turn_keep(q, k), keep)


def test_a_prefill_shorter_than_the_prompt_budget_keeps_everything():
    q, k, _ = _tensors(200, seed=3)
    m = get_method("rocketkv", budget=1024)
    assert bool(m.compress(q, k).all())


def test_stage2_attends_the_reference_s_keys_at_every_step():
    """After stage 1, five decode steps: the reference gathers the kept keys and appends each new
    one; the method sees the whole sequence and a visibility mask. Same keys per KV head."""
    ctx, steps = 600, 5
    q, k, _ = _tensors(ctx + steps, seed=11)
    m = get_method("rocketkv", budget=BUDGET, max_new_tokens=NEW)
    keep = m.compress(q[:ctx], k[:ctx])
    kept = keep.nonzero()[:, 1].view(HKV, -1)  # positions, ascending per head
    for t in range(steps):
        n = ctx + t + 1
        positions = torch.cat([kept, torch.arange(ctx, n).expand(HKV, -1)], dim=1)
        cache = k[:n].transpose(0, 1).gather(1, positions[..., None].expand(-1, -1, D))  # [Hkv, m, D]
        s = m.settings(n)
        assert s.topk == BUDGET // 2
        want = positions.gather(1, ref.stage2_topk(_hf(q[n - 1 : n]), cache[None], s.topk, s.compression_ratio)[0])
        visible = torch.cat([keep, torch.ones(HKV, n - ctx, dtype=torch.bool)], dim=1)
        plan = m.decode_plan_visible(q[n - 1 : n], k[:n], visible)
        assert plan.vertical.shape == (HKV, BUDGET // 2)
        assert _sets(plan.vertical) == _sets(want)
        seen = plan.with_visibility(visible).dense_mask()[:, 0]
        assert seen.sum(dim=1).tolist() == [BUDGET // 2] * HKV


def test_stage2_with_heads_of_different_lengths_selects_each_head_alone():
    n = 400
    q, k, _ = _tensors(n, seed=5)
    m = get_method("rocketkv", budget=BUDGET, max_new_tokens=NEW)
    visible = torch.ones(HKV, n, dtype=torch.bool)
    visible[0, :150] = False  # head 0 sees 250 keys, head 1 all 400
    plan = m.decode_plan_visible(q[-1:], k, visible)
    s = m.settings(n)
    for h in range(HKV):
        idx = visible[h].nonzero()[:, 0]
        cache = k[idx, h][None, None]  # [1, 1, m, D]
        g = HQ // HKV
        want = idx[ref.stage2_topk(_hf(q[-1:, h * g : (h + 1) * g]), cache, s.topk, s.compression_ratio)[0, 0]]
        assert _sets(plan.vertical[h : h + 1]) == [set(want.tolist())]


def test_a_step_over_fewer_keys_than_topk_is_dense():
    q, k, _ = _tensors(50, seed=1)
    plan = get_method("rocketkv", budget=BUDGET).decode_plan(q[-1:], k)
    assert plan.is_full


def _visible_last_row(h: BackendHarness) -> torch.Tensor:
    plan = h.plans[-1]
    return plan.rows_mask(plan.q_len - 1, plan.q_len)[:, 0]  # [H, kv_len]


def test_backend_rocketkv_evicts_once_and_a_later_turn_sees_what_is_left():
    ctx, turn = 600, 40
    q, k, v = _tensors(ctx + 1 + turn + 1, seed=21)
    m = get_method("rocketkv", budget=BUDGET, max_new_tokens=NEW)
    h = BackendHarness(m, num_q_heads=HQ, num_kv_heads=HKV, head_dim=D)
    h.extend(0, q[:ctx], k[:ctx], v[:ctx])
    assert h.plans[-1].is_full or bool(_visible_last_row(h).all())  # the prefill itself is dense
    keep = m.compress(q[:ctx], k[:ctx])
    h.decode(0, q[ctx : ctx + 1], k[ctx : ctx + 1], v[ctx : ctx + 1])
    seen = _visible_last_row(h)
    visible = torch.cat([keep, torch.ones(HKV, 1, dtype=torch.bool)], dim=1)
    want = m.decode_plan_visible(q[ctx : ctx + 1], k[: ctx + 1], visible).vertical
    assert _sets(seen.nonzero()[:, 1].view(HKV, -1)) == _sets(want)
    # a later turn attends densely to the kept keys and its own tokens, never the evicted ones
    a, b = ctx + 1, ctx + 1 + turn
    h.extend(0, q[a:b], k[a:b], v[a:b])
    seen = _visible_last_row(h)
    assert torch.equal(seen[:, :ctx], keep) and bool(seen[:, ctx:].all())


def test_backend_rocketkv_mt_selects_per_turn_and_evicts_nothing():
    ctx, turn = 600, 40
    q, k, v = _tensors(ctx + 1 + turn + 2, seed=22)
    m = get_method("rocketkv_mt", budget=BUDGET, max_new_tokens=NEW)
    h = BackendHarness(m, num_q_heads=HQ, num_kv_heads=HKV, head_dim=D)
    h.extend(0, q[:ctx], k[:ctx], v[:ctx])
    h.decode(0, q[ctx : ctx + 1], k[ctx : ctx + 1], v[ctx : ctx + 1])
    keep1 = m.turn_keep(q[:ctx], k[:ctx])
    visible = torch.cat([keep1, torch.ones(HKV, 1, dtype=torch.bool)], dim=1)
    want = m.decode_plan_visible(q[ctx : ctx + 1], k[: ctx + 1], visible).vertical
    assert _sets(_visible_last_row(h).nonzero()[:, 1].view(HKV, -1)) == _sets(want)
    # the next turn: dense over the full cache (nothing was evicted), then a fresh selection
    a, b = ctx + 1, ctx + 1 + turn
    h.extend(0, q[a:b], k[a:b], v[a:b])
    assert bool(_visible_last_row(h).all())
    keep2 = m.turn_keep(q[a:b], k[:b])
    assert not torch.equal(keep2[:, :ctx], keep1)  # a new question keeps other keys
    h.decode(0, q[b : b + 1], k[b : b + 1], v[b : b + 1])
    visible = torch.cat([keep2, torch.ones(HKV, 1, dtype=torch.bool)], dim=1)
    want = m.decode_plan_visible(q[b : b + 1], k[: b + 1], visible).vertical
    assert _sets(_visible_last_row(h).nonzero()[:, 1].view(HKV, -1)) == _sets(want)

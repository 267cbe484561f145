"""Quest against SCBench's port (microsoft/MInference fb56c91 `quest_decode_kernel`, vendored in
tests/reference/quest_selection.py): the (row, key) pairs each query head attends at a decode step
and on a multi-row follow-up, with GQA (8 query heads on 2 KV heads) and K/V repeated to every
query head as SCBench does; and the attention output itself."""

from __future__ import annotations

import math

import pytest
import torch

from kvmethods import get_method
from kvmethods.torch_executor import attend
from tests.reference.quest_selection import quest_decode_kernel

HQ, HKV, D = 8, 2, 32
G = HQ // HKV


def qkv(q_len, kv_len, seed=0, same_in_group=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(q_len, HKV if same_in_group else HQ, D, generator=g)
    if same_in_group:
        q = q.repeat_interleave(G, dim=1)
    k = torch.randn(kv_len, HKV, D, generator=g)
    k[torch.randint(0, kv_len, (12,), generator=g)] *= 3.0  # a few chunks stand out
    return q, k, torch.randn(kv_len, HKV, D, generator=g)


def reference(q, k, v, budget, chunk=16):
    """(mask bool [Hq, q_len, kv_len], out [q_len, Hq, D]) from SCBench's kernel."""
    q_len, kv_len = q.shape[0], k.shape[0]
    rep = lambda x: x.repeat_interleave(G, dim=1).transpose(0, 1)[None]  # noqa: E731  [1, Hq, n, D]
    kwargs = {"attn_forward_config": {"chunk_size": chunk, "token_budget": budget},
              "position_ids": torch.arange(kv_len - q_len, kv_len)[None]}  # fmt: skip
    out, mask = quest_decode_kernel(q.transpose(0, 1)[None], rep(k), rep(v), kwargs)
    return mask[0], out[0].transpose(0, 1)


@pytest.mark.parametrize("kv_len", [100, 300, 1000, 1037])
@pytest.mark.parametrize("budget", [48, 256, 1024])
@pytest.mark.parametrize("layer", [0, 1, 5])
def test_decode_step_matches_scbench(kv_len, budget, layer):
    q, k, v = qkv(1, kv_len, seed=kv_len + budget)
    plan = get_method("quest", budget=budget).decode_plan(q, k, layer=layer, num_layers=8)
    ref_mask, ref_out = reference(q, k, v, budget)
    assert plan.num_heads == HQ
    assert torch.equal(plan.dense_mask(), ref_mask)  # every layer, current chunk not forced
    out, _ = attend(q, k, v, plan, scale=1 / math.sqrt(D))
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("q_len", "cached"), [(20, 500), (100, 413), (7, 90), (64, 1000)])
@pytest.mark.parametrize("budget", [64, 1024])
def test_multi_row_follow_up_matches_scbench(q_len, cached, budget):
    """A later turn or question: each row picks its own chunks, scored with the rows' summed signs;
    selection ignores causality and the causal mask applies afterwards."""
    kv_len = cached + q_len
    q, k, v = qkv(q_len, kv_len, seed=q_len * kv_len)
    plan = get_method("quest", budget=budget).prefill_plan(q, k, layer=0, num_layers=2)
    ref_mask, ref_out = reference(q, k, v, budget)
    assert plan.q_len == q_len and plan.num_heads == HQ and plan.query_block_size == 1
    assert torch.equal(plan.dense_mask(), ref_mask)
    seen = ref_mask.any(dim=-1).T  # [q_len, Hq]: a row whose chunks all lie after it sees nothing
    out, _ = attend(q, k, v, plan, scale=1 / math.sqrt(D))
    torch.testing.assert_close(out[seen], ref_out[seen], rtol=1e-4, atol=1e-5)


def test_context_prefill_is_dense_and_library_variant_keeps_its_rules():
    q, k, _ = qkv(300, 340)
    quest = get_method("quest", budget=64)
    assert quest.prefill_plan(q, k).is_full  # the first forward (the context's prefill) is dense
    lib = get_method("quest", budget=64, variant="library")
    assert lib.first_sparse_layer == 2 and quest.first_sparse_layer == 0
    assert lib.prefill_plan(q[-20:], k, layer=3).is_full  # the library selects at decode only
    assert lib.decode_plan(q[-1:], k, layer=1).is_full
    plan = lib.decode_plan(q[-1:], k, layer=2)
    assert plan.num_heads == HQ and bool(plan.dense_mask()[:, 0, -1].all())  # current chunk forced
    assert (plan.dense_mask().sum(-1) <= 64).all()
    assert get_method("quest", budget=64, dense_layers=1).decode_plan(q[-1:], k, layer=0).is_full


def test_kv_heads_select_once_per_group():
    q, k, _ = qkv(30, 600, seed=4, same_in_group=True)
    by_query = get_method("quest", budget=128).prefill_plan(q, k)
    by_kv = get_method("quest", budget=128, heads="kv").prefill_plan(q, k)
    assert by_kv.num_heads == HKV and by_query.num_heads == HQ
    assert torch.equal(by_kv.expand_heads(HQ).dense_mask(), by_query.dense_mask())
    q, k, _ = qkv(1, 600, seed=5)
    plan = get_method("quest", budget=128, heads="kv").decode_plan(q, k)
    assert plan.num_heads == HKV and (plan.dense_mask().sum(-1) == 128).all()

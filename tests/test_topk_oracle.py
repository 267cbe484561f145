"""The exact top-k oracle: its keys are a brute-force float64 top-k of q . k per query head, its
output is dense attention restricted to them, and a budget covering the sequence is dense. GQA:
8 query heads on 2 KV heads."""

from __future__ import annotations

import math

import pytest
import torch

from kvmethods.registry import get_method
from kvmethods.torch_executor import attend
from tests.kvm_harness import BackendHarness

HQ, HKV, D = 8, 2, 64


def _tensors(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, HQ, D, generator=g), torch.randn(n, HKV, D, generator=g),
            torch.randn(n, HKV, D, generator=g))


def _brute_force(q_row: torch.Tensor, k: torch.Tensor, budget: int) -> list[set[int]]:
    """Per query head: the `budget` keys of highest q . k, in float64, one key at a time."""
    g = HQ // HKV
    out = []
    for hq in range(HQ):
        scores = [(float(torch.dot(q_row[hq].double(), k[j, hq // g].double())), j) for j in range(k.shape[0])]
        out.append({j for _, j in sorted(scores, reverse=True)[:budget]})
    return out


def _restricted_attention(q_row, k, v, keys: list[set[int]]) -> torch.Tensor:
    """float64 softmax attention of each query head over its own keys only."""
    g = HQ // HKV
    out = torch.zeros(HQ, D, dtype=torch.float64)
    for hq, chosen in enumerate(keys):
        idx = torch.tensor(sorted(chosen))
        logits = k[idx, hq // g].double() @ q_row[hq].double() / math.sqrt(D)
        out[hq] = torch.softmax(logits, dim=0) @ v[idx, hq // g].double()
    return out


@pytest.mark.parametrize("budget", [1, 16, 100])
def test_decode_attends_the_float64_top_k_and_its_output_is_attention_over_them(budget):
    n = 300
    q, k, v = _tensors(n, seed=budget)
    plan = get_method("topk", budget=budget).decode_plan(q[-1:], k)
    seen = plan.dense_mask()[:, 0]  # [Hq, n]
    want = _brute_force(q[-1], k, budget)
    assert [set(row.nonzero()[:, 0].tolist()) for row in seen] == want
    out, _ = attend(q[-1:], k, v, plan, scale=D**-0.5)
    torch.testing.assert_close(out[0].double(), _restricted_attention(q[-1], k, v, want), atol=1e-5, rtol=1e-5)


def test_heads_of_one_group_choose_their_own_keys():
    q, k, _ = _tensors(200, seed=7)
    seen = get_method("topk", budget=8).decode_plan(q[-1:], k).dense_mask()[:, 0]
    assert not torch.equal(seen[0], seen[1])  # query heads 0 and 1 share KV head 0


def test_kv_heads_choose_once_per_group_from_the_group_mean_probability():
    q, k, _ = _tensors(200, seed=8)
    plan = get_method("topk", budget=8, heads="kv").decode_plan(q[-1:], k)
    assert plan.num_heads == HKV
    probs = torch.softmax(torch.einsum("hd,nhd->hn", q[-1].double(), k.double().repeat_interleave(4, 1)) / 8, dim=-1)
    mean = probs.view(HKV, 4, -1).mean(dim=1)
    for h in range(HKV):
        assert set(plan.vertical[h].tolist()) == set(mean[h].topk(8).indices.tolist())


@pytest.mark.parametrize("budget", [300, 301, 4096])
def test_a_budget_covering_the_sequence_is_dense(budget):
    q, k, v = _tensors(300, seed=2)
    plan = get_method("topk", budget=budget).decode_plan(q[-1:], k)
    assert plan.is_full


def test_the_context_prefill_and_follow_ups_are_dense_by_default():
    q, k, _ = _tensors(300, seed=4)
    m = get_method("topk", budget=16)
    assert m.prefill_plan(q, k).is_full  # the context's prefill
    assert m.prefill_plan(q[-20:], k).is_full  # a follow-up extend (RocketKV's oracle: a prefill)


def test_sparse_follow_ups_select_per_row_among_its_causal_keys():
    q, k, v = _tensors(300, seed=5)
    rows = 20
    plan = get_method("topk", budget=16, follow_ups="sparse").prefill_plan(q[-rows:], k)
    seen = plan.dense_mask()  # [Hq, rows, 300]
    for i in (0, 7, rows - 1):
        p = 300 - rows + i
        assert [set(r.nonzero()[:, 0].tolist()) for r in seen[:, i]] == _brute_force(q[p], k[: p + 1], 16)
    assert get_method("topk", budget=16, follow_ups="sparse").prefill_plan(q, k).is_full  # context: dense


def test_through_the_backend_each_step_attends_the_top_keys():
    n = 150
    q, k, v = _tensors(n + 2, seed=9)
    h = BackendHarness(get_method("topk", budget=32), num_q_heads=HQ, num_kv_heads=HKV, head_dim=D)
    h.extend(0, q[:n], k[:n], v[:n])
    for p in (n, n + 1):
        h.decode(0, q[p : p + 1], k[p : p + 1], v[p : p + 1])
        seen = h.plans[-1].dense_mask()[:, 0]
        assert [set(r.nonzero()[:, 0].tolist()) for r in seen] == _brute_force(q[p], k[: p + 1], 32)

"""KVzip: the scores and kept sets equal KVzip's own code (tests/reference/kvzip_score.py) on the
same tensors, GQA 8 query heads on 2 KV heads."""

import pytest
import torch

from kvmethods import get_method
from kvmethods.kvzip import KVzip, reconstruction_scores
from tests.reference.kvzip_score import KVScore

LAYERS, HQ, HKV, D = 3, 8, 2, 16


def chunks(sink: int, ctx: int, size: int) -> list[tuple[int, int]]:
    """KVzip's `chunk_fn` over the context after the sink, as absolute (start, end)."""
    return [(start, min(start + size, sink + ctx)) for start in range(sink, sink + ctx, size)]


def run_both(dtype: torch.dtype, sink: int = 5, ctx: int = 50, chunk: int = 20, prompt: int = 7):
    """Each chunk's reconstruction rows (prompt + the chunk) over the cached sink + context and
    themselves, scored by KVzip's `_get_score` and by `reconstruction_scores`."""
    gen = torch.Generator().manual_seed(0)
    ref = KVScore(LAYERS, HKV, dtype, sink=sink)
    ref.init_score()
    ref.start_idx = sink
    ours = [[] for _ in range(LAYERS)]
    for start, end in chunks(sink, ctx, chunk):
        rows = prompt + end - start
        ref.start_idx, ref.end_idx = start, end
        for layer in range(LAYERS):
            q = torch.randn(rows, HQ, D, generator=gen).mul(2).to(dtype)
            k = torch.randn(sink + ctx + rows, HKV, D, generator=gen).to(dtype)
            ref._get_score(q.transpose(0, 1)[None], k.transpose(0, 1)[None], layer)
            ours[layer].append(reconstruction_scores(q, k, sink, start, end))
    return torch.stack(ref.score)[:, 0], torch.stack([torch.cat(s, dim=-1) for s in ours]), ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scores_equal_kvzip(dtype):
    ref, ours, _ = run_both(dtype)
    assert ours.shape == (LAYERS, HKV, 50) and ours.dtype == dtype
    assert torch.equal(ref, ours)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.55])
def test_pair_level_keeps_kvzip_threshold(ratio):
    ref_scores, ours, ref = run_both(torch.float32)
    expected, _ = ref._threshold(ref.score, ratio)
    kept = KVzip(ratio=ratio).select(ours)
    assert torch.equal(kept, expected[:, 0])
    assert kept.sum() == int(ours.numel() * ratio) - 1  # KVzip keeps one fewer than the share
    per_head = kept.sum(-1)
    assert per_head.min() != per_head.max()  # head-wise budgets: not uniform


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.55])
def test_pair_uniform_level_keeps_kvzip_topk(ratio):
    _, ours, ref = run_both(torch.float32)
    expected, _ = ref._threshold_uniform(ref.score, ratio)
    kept = KVzip(ratio=ratio, level="pair-uniform").select(ours)
    assert torch.equal(kept, expected[:, 0])
    assert (kept.sum(-1) == int(50 * ratio)).all()


def test_budget_is_keys_per_head():
    _, ours, ref = run_both(torch.float32)
    uniform = KVzip(budget=12, level="pair-uniform").select(ours)
    assert (uniform.sum(-1) == 12).all()
    expected, _ = ref._threshold_uniform(ref.score, 12 / 50)
    assert torch.equal(uniform, expected[:, 0])
    pair = KVzip(budget=12).select(ours)
    assert pair.sum() == LAYERS * HKV * 12 - 1
    assert KVzip(budget=50).select(ours).all() and KVzip(budget=4096).select(ours).all()


def test_registered_with_a_scoring_pass():
    method = get_method("kvzip")
    assert isinstance(method, KVzip) and method.scoring_pass and method.family == "kv_dropping"
    assert method.state_heads(HQ, HKV) == HKV
    with pytest.raises(ValueError, match="level"):
        KVzip(level="head")
    with pytest.raises(ValueError, match="ratio"):
        KVzip(ratio=1.5)
    # the context's prefill decides nothing: the scoring pass does
    assert method.compress(torch.randn(4, HQ, D), torch.randn(9, HKV, D)).all()

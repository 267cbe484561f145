"""KV dropping (StreamingLLM, SnapKV, PyramidKV), quantization (KIVI, FP8) and retrieval (Quest).

Each is checked against a reference written from the method's definition (loops, float64).
"""

from __future__ import annotations

import math

import pytest
import torch

from kvmethods import SparsePlan, get_method
from kvmethods.pyramidkv import pyramid_budgets
from kvmethods.quest import page_bounds

HQ, HKV, D = 4, 2, 16


def qk(q_len, kv_len, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(q_len, HQ, D, generator=g), torch.randn(kv_len, HKV, D, generator=g)


# -- StreamingLLM ------------------------------------------------------------------------------


HEADS = {"query": HQ, "kv": HKV}


@pytest.mark.parametrize("heads", HEADS)
@pytest.mark.parametrize(("kv_len", "budget", "sink"), [(300, 64, 8), (100, 99, 4), (50, 64, 8), (200, 129, 128)])
def test_streamingllm_keeps_sink_and_recent(kv_len, budget, sink, heads):
    q, k = qk(20, kv_len)
    keep = get_method("streamingllm", budget=budget, sink=sink, heads=heads).compress(q, k)
    j = torch.arange(kv_len)
    ref = (j < sink) | (j >= kv_len - (budget - sink)) if kv_len > budget else torch.ones(kv_len, dtype=torch.bool)
    h = HEADS[heads]
    assert keep.shape == (h, kv_len) and keep.dtype == torch.bool
    assert torch.equal(keep, ref.expand(h, -1))
    assert keep.sum(-1).tolist() == [min(budget, kv_len)] * h


# -- SnapKV / PyramidKV ------------------------------------------------------------------------


def pool_reference(mass, kernel, pooling):
    """1-D pooling, stride 1, padding kernel // 2: zero padding counted in the average, ignored by max."""
    pad = kernel // 2
    pooled = torch.zeros_like(mass)
    for i in range(mass.numel()):
        win = [mass[j] for j in range(i - pad, i + pad + 1) if 0 <= j < mass.numel()]
        pooled[i] = sum(win) / kernel if pooling == "avgpool" else max(win)
    return pooled


def snapkv_reference(q_window, k, budget, window, kernel, pooling, heads="query"):
    """Per query head (K repeated to every query head: the window's mass pooled, SCBench) or per
    KV head (each query head's pooled mass averaged over the group, kvpress). Returns the keep
    mask and the scores of the keys before the window [H, kv_len - window]."""
    kv = k.shape[0]
    w = min(window, q_window.shape[0])
    per_query = heads == "query"
    g = 1 if per_query else HQ // HKV
    keep = torch.zeros(HEADS[heads], kv, dtype=torch.bool)
    scores = torch.zeros(HEADS[heads], kv - window, dtype=torch.float64)
    for h in range(HEADS[heads]):
        score = scores[h]
        for hq in range(h * g, (h + 1) * g):
            mass = torch.zeros(kv - window, dtype=torch.float64)
            for r in range(w):
                pos = kv - w + r
                kv_head = hq // (HQ // HKV)
                logits = k[: pos + 1, kv_head].double() @ q_window[-w + r, hq].double() / math.sqrt(D)
                mass += torch.softmax(logits, 0)[: kv - window]
            score += pool_reference(mass, kernel, pooling) / g
        keep[h, score.topk(budget - window).indices] = True
        keep[h, kv - window :] = True
    return keep, scores


@pytest.mark.parametrize("heads", HEADS)
@pytest.mark.parametrize(("kv_len", "q_rows"), [(200, 40), (150, 150), (120, 10)])
@pytest.mark.parametrize(("budget", "window", "kernel", "pooling"), [(40, 8, 5, "avgpool"), (64, 16, 3, "maxpool")])
def test_snapkv_matches_reference_and_keeps_budget(kv_len, q_rows, budget, window, kernel, pooling, heads):
    q, k = qk(q_rows, kv_len, seed=kv_len + budget)
    k[37] *= 4  # a few standout keys
    m = get_method("snapkv", budget=budget, window=window, kernel_size=kernel, pooling=pooling, heads=heads)
    keep = m.compress(q, k, layer=3, num_layers=8)
    assert keep.sum(-1).tolist() == [budget] * HEADS[heads]
    want, scores = snapkv_reference(q, k, budget, window, kernel, pooling, heads)
    if pooling == "avgpool":
        assert torch.equal(keep, want)
    else:  # max pooling repeats each peak over the kernel: exact ties, any of them may be kept
        assert keep[:, kv_len - window :].all()
        for h in range(HEADS[heads]):
            kept, dropped = scores[h][keep[h, : kv_len - window]], scores[h][~keep[h, : kv_len - window]]
            assert kept.min() >= dropped.max() - 1e-6


def test_snapkv_short_context_keeps_everything():
    q, k = qk(10, 30)
    assert get_method("snapkv", budget=64, window=8).compress(q, k).all()


@pytest.mark.parametrize(
    ("budget", "window", "layers", "kv_len", "beta"),
    [
        (4096, 32, 32, 131072, 20),
        (64, 8, 6, 300, 20),
        (64, 8, 5, 115, 20),  # max_n capped at the context, min_n raised
        (48, 8, 4, 1000, 3),
        (100, 10, 7, 401, 20),
    ],
)
def test_pyramid_budgets_shrink_in_integer_steps(budget, window, layers, kv_len, beta):
    budgets = pyramid_budgets(budget, window, layers, kv_len, beta)
    assert len(budgets) == layers
    steps = {a - b for a, b in zip(budgets, budgets[1:])}
    assert len(steps) == 1 and steps.pop() > 0  # linear, strictly shrinking
    assert sum(budgets) >= budget * layers  # floor steps: at least the budget on average
    assert max(budgets) <= kv_len and min(budgets) >= window + (budget - window) // beta


def test_pyramid_budgets_short_contexts_and_uniform_band():
    assert pyramid_budgets(64, 8, 6, 50, 20) == [50] * 6  # shorter than the budget: nothing dropped
    assert pyramid_budgets(64, 8, 6, 64, 20) == [64] * 6
    assert pyramid_budgets(64, 8, 6, 111, 20) == [64] * 6  # budget <= kv_len < 2 (budget - window)
    assert pyramid_budgets(64, 8, 6, 112, 20) != [64] * 6
    assert pyramid_budgets(64, 8, 1, 300, 20) == [64]


def test_pyramidkv_keeps_layer_budget_with_snapkv_scoring():
    q, k = qk(32, 300, seed=4)
    pyr = get_method("pyramidkv", budget=64, window=8)
    layers = 6
    budgets = pyramid_budgets(64, 8, layers, 300, 20)
    counts = []
    for layer in range(layers):
        keep = pyr.compress(q, k, layer=layer, num_layers=layers)
        counts.append(keep.sum(-1))
        assert keep.sum(-1).tolist() == [budgets[layer]] * HQ
        snap = get_method("snapkv", budget=budgets[layer], window=8).compress(q, k)
        assert torch.equal(keep, snap)
    assert torch.stack(counts).float().mean() >= 64
    with pytest.raises(ValueError, match="layer must be in"):
        pyr.compress(q, k, layer=6, num_layers=6)


# -- KIVI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize(("n", "d"), [(100, 64), (64, 40), (20, 32)])
def test_kivi_groups_residual_and_error(bits, n, d):
    g = torch.Generator().manual_seed(n + d)
    k = torch.randn(n, HKV, d, generator=g)
    v = torch.randn(n, HKV, d, generator=g) * 3
    m = get_method("kivi", bits=bits, group_size=32, residual=32)
    kq, vq = m.quantize_kv(k, v)
    assert kq.shape == k.shape and vq.dtype == v.dtype
    levels = 2**bits - 1
    nk = n - n % 32  # keys: full residual-sized chunks quantized, the rest exact
    assert torch.equal(kq[nk:], k[nk:])
    fp16 = 2**-11  # SCBench dequantizes with scale and minimum in float16
    for start in range(0, nk, 32):  # per channel over a 32-token group
        x, y = k[start : start + 32], kq[start : start + 32]
        lo, hi = x.amin(0), x.amax(0)
        assert ((x - y).abs() <= (hi - lo) / levels / 2 + fp16 * (lo.abs() + hi - lo) + 1e-5).all()
        for h in range(HKV):
            for c in range(d):
                assert y[:, h, c].unique().numel() <= levels + 1
    nv = max(0, n - 32)  # values: all but the last 32 tokens, per token over 32-channel groups
    assert torch.equal(vq[nv:], v[nv:])
    for c0 in range(0, d, 32):
        x, y = v[:nv, :, c0 : c0 + 32], vq[:nv, :, c0 : c0 + 32]
        if nv:
            lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
            assert ((x - y).abs() <= (hi - lo) / levels / 2 + fp16 * (lo.abs() + hi - lo) + 1e-5).all()
            assert max(y[t, h].unique().numel() for t in range(nv) for h in range(HKV)) <= levels + 1
    if n >= 64:
        assert not torch.equal(kq[:32], k[:32]) and not torch.equal(vq[:32], v[:32])


def test_kivi_preserves_bfloat16_and_constant_groups():
    k = torch.ones(64, HKV, 32, dtype=torch.bfloat16) * 0.5
    kq, vq = get_method("kivi").quantize_kv(k, k.clone())
    assert kq.dtype == torch.bfloat16 and torch.equal(kq, k) and torch.equal(vq, k)
    with pytest.raises(ValueError, match="multiple of group_size"):
        get_method("kivi", residual=48)


# -- FP8 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 0.05])
def test_fp8_error_bound_and_saturation(scale):
    g = torch.Generator().manual_seed(1)
    k = torch.randn(50, HKV, D, generator=g) * 4
    v = torch.randn(50, HKV, D, generator=g) * 1e-3
    k[0, 0, 0] = 1e4  # beyond e4m3's range
    m = get_method("fp8", scale=scale)
    kq, vq = m.quantize_kv(k, v)
    for x, y in ((k, kq), (v, vq)):
        clipped = x.clamp(-448 * scale, 448 * scale)
        assert ((clipped - y).abs() <= clipped.abs() * 2**-4 + 2**-10 * scale + 1e-12).all()
        assert torch.equal(m.quantize(y), y)  # idempotent: results are representable
    assert kq[0, 0, 0] == 448 * scale
    exact = torch.tensor([0.5, -1.0, 1.125, 448.0]).view(4, 1, 1).expand(4, HKV, 1) * scale
    assert torch.equal(m.quantize_kv(exact, exact)[0], exact)


# -- Quest -------------------------------------------------------------------------------------


def test_page_bounds_with_partial_last_page():
    _, k = qk(1, 37)
    kmin, kmax = page_bounds(k, 16)
    assert kmin.shape == (3, HKV, D)
    for p in range(3):
        page = k[p * 16 : (p + 1) * 16]
        assert torch.equal(kmin[p], page.amin(0)) and torch.equal(kmax[p], page.amax(0))


@pytest.mark.parametrize(("seq_len", "budget", "page"), [(300, 64, 16), (257, 48, 16), (100, 40, 8), (40, 64, 16)])
def test_quest_selects_top_pages_and_current_page(seq_len, budget, page):
    q, k = qk(1, seq_len, seed=seq_len)
    m = get_method("quest", budget=budget, page_size=page)
    kmin, kmax = m.page_bounds(k)
    sel = m.select_pages(q[0], kmin, kmax, seq_len=seq_len)
    pages = math.ceil(seq_len / page)
    assert sel.shape == (HKV, pages)
    g = HQ // HKV
    for h in range(HKV):
        scores = torch.zeros(pages, dtype=torch.float64)
        for hq in range(h * g, (h + 1) * g):
            for p in range(pages):
                qd = q[0, hq].double()
                scores[p] += sum(max(qd[c] * kmax[p, h, c], qd[c] * kmin[p, h, c]) for c in range(D))
        want = min(budget // page, pages)
        assert int(sel[h].sum()) == want
        assert bool(sel[h, pages - 1])  # the current page
        others = [p for p in range(pages - 1) if sel[h, p]]
        rest = [p for p in range(pages - 1) if not sel[h, p]]
        if others and rest:
            assert min(scores[others]) >= max(scores[rest]) - 1e-6
        top = set(torch.topk(scores[:-1], want - 1).indices.tolist()) if want > 1 else set()
        assert set(others) == top


def test_quest_decode_plan():
    q, k = qk(1, 300, seed=2)
    m = get_method("quest", budget=64, page_size=16, variant="library", heads="kv")  # the library's rules
    plan = m.decode_plan(q, k, layer=2, num_layers=4)
    kmin, kmax = m.page_bounds(k)
    pages = m.select_pages(q[0], kmin, kmax, seq_len=300)
    assert torch.equal(plan.dense_mask()[:, 0], pages.repeat_interleave(16, 1)[:, :300])
    assert plan.visible_fraction() == pytest.approx(64 / 300, abs=16 / 300)
    assert m.decode_plan(q, k, layer=1, num_layers=4).is_full  # the first dense_layers layers
    assert m.decode_plan(q, k[:64], layer=3, num_layers=4).is_full  # within budget
    assert m.prefill_plan(*qk(50, 300)).is_full
    assert isinstance(plan, SparsePlan)

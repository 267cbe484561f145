"""Sparse-prefill plans against dense-mask references written from each method's definition.

The references below are independent of `kvmethods` (loops and float64, no plan code): each builds
bool [Hkv, q_len, kv_len] straight from the method's definition and is compared with
`plan.dense_mask()`. Shapes cover prefill with and without a cached prefix and GQA (Hq=4, Hkv=2).
"""

from __future__ import annotations

import math

import pytest
import torch

from kvmethods import SparsePlan, get_method

HQ, HKV, D = 4, 2, 16
SHAPES = [(96, 96), (70, 160), (1, 150)]  # (q_len, kv_len): no prefix, cached prefix, decode-like


def qk(q_len, kv_len, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(q_len, HQ, D, generator=g)
    k = torch.randn(kv_len, HKV, D, generator=g)
    # a little structure (sink + locality) so that selections are not arbitrary
    k[:2] += 1.5
    return q, k


def causal(q_len, kv_len):
    pos = kv_len - q_len + torch.arange(q_len)[:, None]
    return torch.arange(kv_len)[None, :] <= pos  # [q_len, kv_len]


def group_probs(q_last, k, per_query_head=False):
    """float64 [Hq, w, kv] (per query head) or [Hkv, w, kv] (averaged over each group): softmax of
    the last w queries (causal)."""
    w, kv = q_last.shape[0], k.shape[0]
    g = HQ // HKV
    out = torch.zeros(HQ if per_query_head else HKV, w, kv, dtype=torch.float64)
    for hq in range(HQ):
        logits = q_last[:, hq].double() @ k[:, hq // g].double().T / math.sqrt(D)
        for r in range(w):
            logits[r, kv - w + r + 1 :] = -math.inf
        if per_query_head:
            out[hq] = torch.softmax(logits, -1)
        else:
            out[hq // g] += torch.softmax(logits, -1) / g
    return out


def diagonal_sums(probs):
    """float64 [H, kv]: out[h, o] = sum_r probs[h, r, p_r - o] via torch.diagonal."""
    h, w, kv = probs.shape
    out = torch.zeros(h, kv, dtype=torch.float64)
    for o in range(kv):
        out[:, o] = torch.diagonal(probs, offset=kv - w - o, dim1=1, dim2=2).sum(-1)
    return out


# -- SparsePlan semantics ----------------------------------------------------------------------


def brute_force(plan: SparsePlan, vertical, slash, blocks, vis):
    q_len, kv, bs, qbs = plan.q_len, plan.kv_len, plan.block_size, plan.query_block_size or plan.block_size
    out = torch.zeros(plan.num_heads, q_len, kv, dtype=torch.bool)
    for h in range(plan.num_heads):
        for i in range(q_len):
            p = kv - q_len + i
            for j in range(p + 1):
                seen = (
                    j < plan.sink
                    or (plan.window and j >= p - plan.window + 1)
                    or j in vertical[h]
                    or (p - j) in slash[h]
                    or (blocks is not None and bool(blocks[h, i // qbs, j // bs]))
                    or i >= q_len - plan.dense_rows
                )
                out[h, i, j] = bool(seen) and (vis is None or bool(vis[h, j]))
    return out


@pytest.mark.parametrize(("q_len", "kv_len"), [(12, 12), (9, 30), (1, 17)])
@pytest.mark.parametrize("query_block_size", [0, 1, 3])
def test_plan_dense_mask_matches_brute_force(q_len, kv_len, query_block_size):
    g = torch.Generator().manual_seed(q_len * 100 + kv_len)
    vertical = torch.tensor([[3, 7, -1], [0, kv_len - 1, 5]])
    slash = torch.tensor([[0, 4], [2, -1]])
    bs = 4
    qbs = query_block_size or bs
    blocks = torch.rand(HKV, math.ceil(q_len / qbs), math.ceil(kv_len / bs), generator=g) < 0.3
    vis = torch.rand(HKV, kv_len, generator=g) < 0.8
    plan = SparsePlan(
        q_len, kv_len, HKV, sink=2, window=3, vertical=vertical, slash=slash,
        block_mask=blocks, block_size=bs, dense_rows=2, visibility=vis, query_block_size=query_block_size,
    )  # fmt: skip
    vsets = [set(v.tolist()) - {-1} for v in vertical]
    ssets = [set(s.tolist()) - {-1} for s in slash]
    assert torch.equal(plan.dense_mask(q_len, kv_len), brute_force(plan, vsets, ssets, blocks, vis))
    # the full plan is plain causal attention
    assert torch.equal(SparsePlan.full(q_len, kv_len, HKV).dense_mask()[0], causal(q_len, kv_len))


def band_brute_force(slash, vertical, q_len, kv_len, band):
    """bool [q_len, kv_len] of one head, from `kvmethods.plan`'s description of slash bands: per row
    block ending at E, offset o < E gives keys [max(E - o, B) - B, max(E - o, B)); bands merge in
    ascending key order (past range_end + B: new range; past range_end: range_end += B); columns
    count below the last range's end; all causal."""
    off = kv_len - q_len
    out = torch.zeros(q_len, kv_len, dtype=torch.bool)
    for b in range(math.ceil(q_len / band)):
        end_pos = off + (b + 1) * band
        ends = sorted({max(end_pos - o, band) for o in slash if 0 <= o < end_pos})
        ranges = []
        for s in ends:
            if not ranges or s > ranges[-1][1] + band:
                ranges.append([s - band, s])
            elif s > ranges[-1][1]:
                ranges[-1][1] += band
        limit = ranges[-1][1] if ranges else 0
        for i in range(b * band, min((b + 1) * band, q_len)):
            for j in range(off + i + 1):
                out[i, j] = any(a <= j < z for a, z in ranges) or (j in vertical and j < limit)
    return out


@pytest.mark.parametrize(("q_len", "kv_len", "band"), [(40, 40, 8), (37, 90, 8), (30, 53, 4), (1, 30, 8)])
def test_slash_band_semantics(q_len, kv_len, band):
    g = torch.Generator().manual_seed(q_len + kv_len)
    slash = torch.randint(0, kv_len, (HKV, 7), generator=g)
    slash[0, :3] = torch.tensor([0, 9, 19])  # gaps just over one and two bands
    slash[1, -1] = -1  # padding
    vertical = torch.randint(0, kv_len, (HKV, 4), generator=g)
    plan = SparsePlan(q_len, kv_len, HKV, vertical=vertical, slash=slash, slash_band=band)
    for h in range(HKV):
        want = band_brute_force(set(slash[h].tolist()), set(vertical[h].tolist()), q_len, kv_len, band)
        assert torch.equal(plan.dense_mask()[h], want), h
    with pytest.raises(ValueError, match="slash_band needs slash"):
        SparsePlan(q_len, kv_len, HKV, slash_band=band)


def test_plan_validation_and_helpers():
    with pytest.raises(ValueError, match="q_len <= kv_len"):
        SparsePlan(10, 5, 2)
    with pytest.raises(ValueError, match=r"block_mask must be \(2, 3, 3\)"):
        SparsePlan(10, 10, 2, block_mask=torch.zeros(2, 2, 2, dtype=torch.bool), block_size=4)
    with pytest.raises(ValueError, match="visibility must be"):
        SparsePlan.full(4, 8, 2).with_visibility(torch.ones(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="this plan is for"):
        SparsePlan.full(4, 8, 2).dense_mask(5, 8)
    vis = torch.zeros(2, 8, dtype=torch.bool)
    vis[:, :2] = True
    plan = SparsePlan.full(1, 8, 2).with_visibility(vis)
    assert plan.visible_fraction() == pytest.approx(0.25)
    both = plan.with_visibility(torch.tensor([[True] * 8, [False] + [True] * 7]))
    assert both.dense_mask()[:, 0].sum(-1).tolist() == [2, 1]
    assert SparsePlan.full(8, 8, 2).density() == pytest.approx(1.0)


# -- static patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize(("q_len", "kv_len"), SHAPES)
@pytest.mark.parametrize(("budget", "sink"), [(24, 4), (40, 8), (500, 8)])
def test_a_shape_and_tri_shape(q_len, kv_len, budget, sink):
    q, k = qk(q_len, kv_len)
    pos = kv_len - q_len + torch.arange(q_len)[:, None]
    j = torch.arange(kv_len)[None, :]
    ref = causal(q_len, kv_len) & ((j < sink) | (pos - j < budget - sink))
    plan = get_method("a_shape", budget=budget, sink=sink, follow_ups="sparse").prefill_plan(q, k)
    assert torch.equal(plan.dense_mask(), ref.expand(HKV, -1, -1))
    # every row sees at most `budget` keys
    assert int(plan.dense_mask().sum(-1).max()) <= budget
    last_q = 10
    rows = torch.arange(q_len)[:, None] >= q_len - last_q
    tri = get_method("tri_shape", budget=budget, sink=sink, last_q=last_q, follow_ups="sparse").prefill_plan(q, k)
    assert torch.equal(tri.dense_mask(), (ref | (rows & causal(q_len, kv_len))).expand(HKV, -1, -1))


# -- MInference --------------------------------------------------------------------------------


def minference_reference(q, k, vertical_size, slash_size, last_q, per_query_head):
    """Exact diagonals (slash_mode="exact"); SCBench's kernel bands are checked against its own
    code in test_parity_sparse_prefill.py."""
    q_len, kv = q.shape[0], k.shape[0]
    w = min(last_q, q_len)
    probs = group_probs(q[-w:], k, per_query_head)
    vert = probs.sum(1)
    vert[:, :30] = math.inf
    sl = diagonal_sums(probs)
    sl[:, :100] = math.inf
    nv, ns = min(kv, max(vertical_size, 30)), min(kv, max(slash_size, 50))
    pos = kv - q_len + torch.arange(q_len)[:, None]
    j = torch.arange(kv)[None, :]
    out = []
    for h in range(probs.shape[0]):
        vset = vert[h].topk(nv).indices
        sset = sl[h].topk(ns).indices
        in_v = torch.isin(j, vset)
        on_s = torch.isin(pos - j, sset)
        out.append(causal(q_len, kv) & (in_v | on_s))
    return torch.stack(out)


@pytest.mark.parametrize(("q_len", "kv_len"), [(200, 200), (150, 260)])
@pytest.mark.parametrize(("vertical_size", "budget"), [(40, 160), (60, 180)])
@pytest.mark.parametrize("heads", ["query", "kv"])
def test_minference_vertical_slash(q_len, kv_len, vertical_size, budget, heads):
    q, k = qk(q_len, kv_len, seed=q_len + budget)
    m = get_method("minference", budget=budget, vertical_size=vertical_size, last_q=32, slash_mode="exact",
                   heads=heads, follow_ups="sparse")  # fmt: skip
    plan = m.prefill_plan(q, k)
    ref = minference_reference(q, k, vertical_size, budget - vertical_size, 32, heads == "query")
    assert plan.num_heads == (HQ if heads == "query" else HKV) and plan.slash_band == 0
    assert torch.equal(plan.dense_mask(), ref)
    assert plan.dense_mask().sum() < causal(q_len, kv_len).sum() * plan.num_heads  # actually sparse


def test_minference_dense_below_min_q_len_and_for_one_row():
    q, k = qk(50, 50)
    assert get_method("minference", min_q_len=64).prefill_plan(q, k).is_full
    assert not get_method("minference", budget=90, vertical_size=30).prefill_plan(q, k).is_full  # no minimum
    assert get_method("minference").prefill_plan(q[:1], k[:1]).is_full  # a one-row prefill: dense (SCBench)


# -- FlexPrefill -------------------------------------------------------------------------------


def cover(x, gamma):
    csum = torch.cumsum(torch.sort(x, descending=True).values, 0)
    return int((csum <= gamma).sum()) + 1


def flexprefill_reference(q, k, budget, gamma, tau, bs, per_query_head):
    """From the method's definition (SCBench's flexprefill.py), with the project's generalisation
    to a cached prefix (a query block spanning key blocks lo..hi)."""
    q_len, kv = q.shape[0], k.shape[0]
    off, g = kv - q_len, HQ // HKV
    nqb, nkb = math.ceil(q_len / bs), math.ceil(kv / bs)
    min_b = min(math.ceil(budget / bs), nkb)
    w = min(bs, q_len)
    probs = group_probs(q[-w:], k, per_query_head)
    slash_all = diagonal_sums(probs) / w  # [H, offset]
    kmean = torch.stack([k[b * bs : (b + 1) * bs].double().mean(0) for b in range(nkb)])  # [nkb, H, D]
    qmean = torch.stack([q[b * bs : (b + 1) * bs].double().mean(0) for b in range(nqb)])  # [nqb, Hq, D]
    lo = [(off + b * bs) // bs for b in range(nqb)]
    hi = [(off + min((b + 1) * bs, q_len) - 1) // bs for b in range(nqb)]
    masks = []
    for h in range(probs.shape[0]):
        group = [h] if per_query_head else list(range(h * g, (h + 1) * g))
        kv_head = h // g if per_query_head else h
        vert, by_c = probs[h].mean(0), slash_all[h].flip(0)  # by_c[c]: offset kv - 1 - c
        n_v = min(max(cover(vert, gamma) // 128 + 1, min_b), nkb)
        n_s = min(max(cover(by_c, gamma) // 128 + 1, min_b), nkb)
        vblk = torch.tensor([vert[b * bs : (b + 1) * bs].sum() for b in range(nkb)])
        cblk = torch.tensor([by_c[b * bs : (b + 1) * bs].sum() for b in range(nkb)])  # from the largest offset
        est = torch.zeros(nkb, dtype=torch.float64)
        for hq in group:
            qbar = q[-w:, hq].double().mean(0) / math.sqrt(D)
            est += torch.softmax(kmean[:, kv_head] @ qbar, 0) / len(group)
        m = (est + vblk) / 2
        jsd = 0.5 * (est * torch.log(est / m)).sum() + 0.5 * (vblk * torch.log(vblk / m)).sum()
        query_aware = bool(torch.sqrt(jsd) < tau)
        if query_aware:
            n_v = n_s = min_b
        vblk[0] = cblk[-1] = math.inf
        vsel = set(vblk.topk(n_v).indices.tolist())
        ssel = {nkb - 1 - c for c in cblk.topk(n_s).indices.tolist()}
        mask = torch.zeros(nqb, nkb, dtype=torch.bool)
        for qb in range(nqb):
            for kb in range(hi[qb] + 1):
                mask[qb, kb] = kb in vsel or any(kb in (lo[qb] - s, hi[qb] - s) for s in ssel)
        if query_aware:
            attn = torch.zeros(nqb, nkb, dtype=torch.float64)
            for hq in group:
                logits = qmean[:, hq] @ kmean[:, kv_head].T / math.sqrt(D)
                for qb in range(nqb):
                    logits[qb, hi[qb] + 1 :] = -math.inf
                attn += torch.softmax(logits, -1) / len(group)
            flat = attn.flatten()
            order = torch.argsort(flat, descending=True)
            total = 0.0
            for idx in order.tolist():
                total += float(flat[idx])
                if total > gamma * nqb:
                    break
                if idx % nkb <= hi[idx // nkb]:
                    mask[idx // nkb, idx % nkb] = True
        masks.append(mask)
    blocks = torch.stack(masks)  # [H, nqb, nkb]
    i = torch.arange(q_len)[:, None]
    j = torch.arange(kv)[None, :]
    return causal(q_len, kv)[None] & blocks[:, i // bs, j // bs], blocks


@pytest.mark.parametrize(("q_len", "kv_len"), [(160, 160), (120, 200), (100, 230)])
@pytest.mark.parametrize("tau", [0.0, 0.1, 1.0])
@pytest.mark.parametrize(("gamma", "budget"), [(0.5, 16), (0.9, 48)])
@pytest.mark.parametrize("heads", ["query", "kv"])
def test_flexprefill_blocks(q_len, kv_len, tau, gamma, budget, heads):
    bs = 16
    q, k = qk(q_len, kv_len, seed=q_len + kv_len)
    method = get_method("flexprefill", budget=budget, gamma=gamma, tau=tau, block_size=bs, heads=heads,
                        follow_ups="sparse")  # fmt: skip
    plan = method.prefill_plan(q, k)
    ref, blocks = flexprefill_reference(q, k, budget, gamma, tau, bs, heads == "query")
    assert plan.num_heads == (HQ if heads == "query" else HKV)
    assert torch.equal(plan.block_mask, blocks)
    assert torch.equal(plan.dense_mask(), ref)


def test_flexprefill_dense_for_short_prefills():
    q, k = qk(256, 400)
    assert get_method("flexprefill").prefill_plan(q, k).is_full  # 256 <= 2 * 128


def test_sparse_prefill_methods_are_dense_at_decode():
    q, k = qk(1, 300)
    for name in ("a_shape", "tri_shape", "minference", "flexprefill"):
        assert get_method(name).decode_plan(q, k).is_full


@pytest.mark.parametrize("name", ["a_shape", "tri_shape", "minference", "flexprefill"])
def test_follow_up_extends_are_dense_by_default(name):
    """SCBench plans only the context's prefill; an extend over a cached context (a later turn, a
    multi-request question) attends densely unless follow_ups="sparse"."""
    small = {"a_shape": dict(budget=24, sink=4), "tri_shape": dict(budget=24, sink=4, last_q=4),
             "minference": dict(budget=60, vertical_size=10, last_q=8, slash_mode="exact"),
             "flexprefill": dict(budget=16, block_size=16)}[name]
    q, k = qk(100, 400)  # 300 cached keys, 100 new rows: a follow-up
    assert get_method(name, **small).prefill_plan(q, k).is_full
    assert not get_method(name, **small, follow_ups="sparse").prefill_plan(q, k).is_full
    q, k = qk(300, 340)  # the context's prefill behind a short cached prefix stays sparse
    assert not get_method(name, **small).prefill_plan(q, k).is_full


def test_composite_sends_follow_ups_to_the_kv_method():
    """tri_shape+quest: the prefill method plans the context's prefill; a follow-up extend it leaves
    dense is Quest's to select (SCBench's Quest acts on every forward after the first)."""
    from kvmethods import parse_method

    method = parse_method("tri_shape+quest", ["tri_shape.budget=24", "tri_shape.sink=4", "budget=48"])
    q, k = qk(300, 300)
    assert torch.equal(method.prefill_plan(q, k).dense_mask(), method.prefill.prefill_plan(q, k).dense_mask())
    q, k = qk(20, 400)  # a follow-up over 380 cached keys
    follow_up = method.prefill_plan(q, k)
    assert not follow_up.is_full
    assert torch.equal(follow_up.dense_mask(), method.kv.prefill_plan(q, k).dense_mask())

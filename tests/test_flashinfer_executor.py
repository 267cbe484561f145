"""The FlashInfer executor's CPU-testable logic: plan splits and masks against `plan.dense_mask()`.

The FlashInfer calls themselves need CUDA; what decides their correctness here is which rows and
keys each call covers. The window call is modelled by FlashInfer's own mask rule (causal,
bottom-right aligned, `kv_idx >= pos - window_left`), the sink and per-head calls by the masks the
executor builds, and their union must equal the plan's exact mask with no key counted twice.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types

import pytest
import torch

from flashinfer_ext import flashinfer_executor as fx
from flashinfer_ext import gpu_check
from kvmethods import SparsePlan, get_method
from tests.conftest import REPO

HQ, HKV, D = 4, 2, 16


def qk(q_len, kv_len, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(q_len, HQ, D, generator=g), torch.randn(kv_len, HKV, D, generator=g)


def fi_causal_window(q_len, kv_len, window_left):
    """bool [q_len, kv_len]: what single_prefill_with_kv_cache(causal=True, window_left) attends."""
    pos = (kv_len - q_len + torch.arange(q_len))[:, None]
    j = torch.arange(kv_len)[None, :]
    return (j <= pos) & (j >= pos - window_left)


def static_union(plan: SparsePlan) -> torch.Tensor:
    """Rebuild [q_len, kv_len] from the calls `_static` makes; asserts the calls are disjoint."""
    s = fx.split_static(plan)
    full = torch.zeros(plan.q_len, plan.kv_len, dtype=torch.long)
    d0 = s.dense_from
    if d0:
        full[:d0, : s.window_keys] += fi_causal_window(d0, s.window_keys, plan.window - 1).long()
    if s.has_sink:
        sink = fx.sink_mask(plan, s)
        assert sink.shape == (d0 - s.sink_from, s.sink_keys)
        assert bool(sink.any(dim=1).all()), "every sink-call row must see a key (merge_state on -inf)"
        full[s.sink_from : d0, : s.sink_keys] += sink.long()
    full[d0:] += fi_causal_window(plan.q_len - d0, plan.kv_len, plan.kv_len).long()
    assert int(full.max()) <= 1, "a key is attended by two calls"
    return full.bool()


STATIC = [
    # (q_len, kv_len, sink, window, dense_rows)
    (64, 64, 4, 9, 0),
    (300, 300, 16, 40, 0),
    (300, 512, 16, 40, 0),  # cached prefix: query offset 212
    (100, 512, 8, 200, 0),  # the window reaches past the sinks for every row
    (200, 200, 0, 30, 0),  # window only
    (257, 300, 5, 31, 100),  # tri-shape
    (64, 512, 3, 6, 64),  # every row dense
    (128, 256, 40, 1, 7),  # window of one key
]


@pytest.mark.parametrize("q_len,kv_len,sink,window,dense_rows", STATIC)
def test_static_split_covers_the_plan_exactly(q_len, kv_len, sink, window, dense_rows):
    plan = SparsePlan(q_len, kv_len, HKV, sink=sink, window=window, dense_rows=dense_rows)
    union = static_union(plan)
    want = plan.dense_mask()
    assert all(torch.equal(union, want[h]) for h in range(HKV))


@pytest.mark.parametrize("name", ["a_shape", "tri_shape"])
@pytest.mark.parametrize("q_len,kv_len", [(64, 64), (300, 300), (200, 512)])
def test_static_split_of_method_plans(name, q_len, kv_len):
    method = get_method(name, budget=48, sink=8, follow_ups="sparse", **({"last_q": 20} if name == "tri_shape" else {}))
    q, k = qk(q_len, kv_len)
    plan = method.prefill_plan(q, k)
    assert plan.is_static and not plan.is_full
    assert torch.equal(static_union(plan), plan.dense_mask()[0])


def test_split_static_rejects_general_plans():
    with pytest.raises(ValueError, match="split_static"):
        fx.split_static(SparsePlan(8, 8, HKV, vertical=torch.zeros(HKV, 1, dtype=torch.long)))
    with pytest.raises(ValueError, match="split_static"):
        fx.split_static(SparsePlan(8, 8, HKV, sink=4))  # no window: the general path takes it


def general_union(plan: SparsePlan, max_elems: int) -> torch.Tensor:
    """Assemble [H, q_len, kv_len] from the executor's per-head row chunks."""
    masks = fx.PlanMasks(plan)
    chunks = fx.row_chunks(plan, max_elems)
    assert chunks[0][0] == 0 and chunks[-1][1] == plan.q_len
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    full = torch.zeros(plan.num_heads, plan.q_len, plan.kv_len, dtype=torch.bool)
    for h in range(plan.num_heads):
        for r0, r1 in chunks:
            m = masks.head(h, r0, r1)
            assert m.shape == (r1 - r0, plan.query_offset + r1) and m.dtype == torch.bool
            assert (r1 - r0) * plan.kv_len <= max(max_elems, plan.kv_len)
            full[h, r0:r1, : m.shape[1]] = m
    return full


def random_general_plans(q_len, kv_len, seed=0):
    g = torch.Generator().manual_seed(seed)
    vert = torch.randint(0, kv_len, (HKV, 5), generator=g)
    vert[0, -1] = -1  # padding
    slash = torch.randint(0, kv_len, (HKV, 6), generator=g)
    slash[1, 0] = -1
    bs = 16
    blocks = torch.rand(HKV, math.ceil(q_len / bs), math.ceil(kv_len / bs), generator=g) < 0.3
    vis = torch.rand(HKV, kv_len, generator=g) < 0.7
    none = torch.zeros(HKV, kv_len, dtype=torch.bool)
    per_row = torch.rand(HKV, q_len, math.ceil(kv_len / bs), generator=g) < 0.2
    return {
        "vertical_slash": SparsePlan(q_len, kv_len, HKV, vertical=vert, slash=slash),
        "blocks": SparsePlan(q_len, kv_len, HKV, block_mask=blocks, block_size=bs),
        "everything": SparsePlan(
            q_len, kv_len, HKV, sink=2, window=4, vertical=vert, slash=slash,
            block_mask=blocks, block_size=bs, dense_rows=3, visibility=vis,
        ),  # fmt: skip
        "full_visibility": SparsePlan.full(q_len, kv_len, HKV).with_visibility(vis),
        "a_shape_visibility": SparsePlan(q_len, kv_len, HKV, sink=4, window=9, visibility=vis),
        "bands": SparsePlan(q_len, kv_len, HKV, vertical=vert, slash=slash, slash_band=64, sink=2),
        "row_blocks": SparsePlan(q_len, kv_len, HKV, block_mask=per_row, block_size=bs, query_block_size=1),
        "sink_only": SparsePlan(q_len, kv_len, HKV, sink=3),
        "nothing_visible": SparsePlan(q_len, kv_len, HKV, window=3).with_visibility(none),
    }


@pytest.mark.parametrize("q_len,kv_len", [(64, 64), (100, 300), (300, 512)])
@pytest.mark.parametrize("max_elems", [1 << 26, 4096])
def test_general_masks_equal_dense_mask(q_len, kv_len, max_elems):
    for name, plan in random_general_plans(q_len, kv_len).items():
        assert torch.equal(general_union(plan, max_elems), plan.dense_mask()), name


@pytest.mark.parametrize(
    "name,kw",
    [
        ("minference", {"budget": 120, "vertical_size": 40, "last_q": 16}),
        ("minference", {"budget": 120, "vertical_size": 40, "last_q": 16, "slash_mode": "exact", "heads": "kv"}),
        ("flexprefill", {"budget": 64, "block_size": 16}),
        ("flexprefill", {"budget": 32, "block_size": 16, "tau": 0.9}),  # query-aware heads
    ],
)
@pytest.mark.parametrize("q_len,kv_len", [(300, 300), (200, 512)])
def test_general_masks_of_method_plans(name, kw, q_len, kv_len):
    q, k = qk(q_len, kv_len, seed=1)
    plan = get_method(name, **kw, follow_ups="sparse").prefill_plan(q, k)
    assert not plan.is_static
    assert torch.equal(general_union(plan, 8192), plan.dense_mask())


@pytest.mark.parametrize(
    "name,kw",
    [
        ("snapkv", {"budget": 64}),
        ("pyramidkv", {"budget": 64}),
        ("streamingllm", {"budget": 64, "sink": 16}),
        ("quest", {"budget": 64, "page_size": 8, "dense_layers": 0}),
    ],
)
def test_decode_and_compress_masks(name, kw):
    """Decode plans (and Quest's follow-up extend, which SCBench's port also selects)."""
    method = get_method(name, **kw)
    q, k = qk(40, 512, seed=2)
    plan = method.decode_plan(q[-1:], k, layer=1, num_layers=4)
    if "compress" in method.phases:
        plan = plan.with_visibility(method.compress(q[-32:], k, layer=1, num_layers=4))
    assert plan.q_len == 1 and not plan.is_full
    assert torch.equal(general_union(plan, 1 << 26), plan.dense_mask())
    if name == "quest":
        extend = method.prefill_plan(q[-40:], k, layer=1, num_layers=4)
        assert extend.q_len == 40 and not extend.is_full
        assert torch.equal(general_union(extend, 4096), extend.dense_mask())


def test_suffix_plan_is_exact():
    q, k = qk(300, 512, seed=3)
    plans = dict(random_general_plans(300, 512))
    plans["tri_shape"] = SparsePlan(300, 512, HKV, sink=4, window=20, dense_rows=100)
    plans["flexprefill"] = get_method("flexprefill", budget=64, block_size=16).prefill_plan(q, k)
    for name, plan in plans.items():
        for rows in (1, 37, 256, 300, 400):
            start, sub = gpu_check.suffix_plan(plan, rows)
            assert sub.q_len >= min(rows, plan.q_len) and start + sub.q_len == plan.q_len
            assert torch.equal(sub.dense_mask(), plan.dense_mask()[:, start:]), (name, rows)


def test_compare_flags_mismatched_empty_rows():
    out = torch.zeros(3, 2, 4)
    lse = torch.tensor([[1.0, 2.0], [3.0, -math.inf], [0.5, 0.5]])
    assert gpu_check.compare(out, lse, out, lse, 1e-2, 1e-2) == pytest.approx((0.0, -1e-2, 0.0))
    other = lse.clone()
    other[1, 1] = 7.0
    assert gpu_check.compare(out, lse, out, other, 1e-2, 1e-2)[2] == math.inf


# -- the executor's calls, run on the CPU through a stand-in for flashinfer ----------------------


def fake_single_prefill(q, k, v, custom_mask=None, causal=False, sm_scale=None, window_left=-1, return_lse=False, **kw):
    """FlashInfer's single_prefill_with_kv_cache as its source defines it: NHD, GQA, bottom-right
    causal, kv_idx >= pos - window_left, custom mask [qo_len, kv_len] over causal, base-2 LSE, and
    masked logits filled with -5e4 (older kernels), so a fully masked row gets a finite average."""
    assert not kw, kw
    assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous()
    assert q.dtype == k.dtype == v.dtype and q.dtype in (torch.bfloat16, torch.float16)
    n, hq, d = q.shape
    kv_len, g = k.shape[0], q.shape[1] // k.shape[1]
    pos = (kv_len - n + torch.arange(n))[:, None]
    j = torch.arange(kv_len)[None, :]
    if custom_mask is not None:
        assert custom_mask.shape == (n, kv_len) and custom_mask.dtype == torch.bool
        mask = custom_mask
    else:
        assert not causal or kv_len >= n
        mask = (j <= pos) if causal else torch.ones(n, kv_len, dtype=torch.bool)
    if window_left >= 0:
        mask = mask & (j >= pos - window_left)
    scale = d**-0.5 if sm_scale is None else sm_scale
    kf, vf = k.float().repeat_interleave(g, 1), v.float().repeat_interleave(g, 1)
    s = torch.einsum("nhd,khd->hnk", q.float(), kf) * (scale / math.log(2))
    s = s.masked_fill(~mask, -5e4)
    m = s.amax(-1, keepdim=True)
    p = torch.exp2(s - m)
    o = torch.einsum("hnk,khd->nhd", p / p.sum(-1, keepdim=True), vf).to(q.dtype).contiguous()
    lse = (m.squeeze(-1) + torch.log2(p.sum(-1))).T.contiguous()
    return (o, lse) if return_lse else o


def fake_merge_state_in_place(v, s, v_other, s_other, mask=None):
    assert mask is None and v.is_contiguous() and s.dtype == s_other.dtype == torch.float32
    s_max = torch.maximum(s, s_other)
    w_a, w_b = torch.exp2(s - s_max), torch.exp2(s_other - s_max)
    v.copy_((v.float() * w_a[..., None] + v_other.float() * w_b[..., None]) / (w_a + w_b)[..., None])
    s.copy_(s_max + torch.log2(w_a + w_b))


@pytest.fixture
def fake_flashinfer(monkeypatch):
    mod = types.ModuleType("flashinfer")
    mod.__version__ = "fake"
    mod.single_prefill_with_kv_cache = fake_single_prefill
    mod.merge_state_in_place = fake_merge_state_in_place
    monkeypatch.setitem(sys.modules, "flashinfer", mod)
    monkeypatch.setattr(fx, "require_cuda", lambda device: None)  # the stand-in runs on the CPU
    return mod


def test_executor_calls_match_torch_executor(fake_flashinfer):
    from kvmethods.torch_executor import attend as torch_attend

    g = torch.Generator().manual_seed(5)
    for q_len, kv_len in [(300, 512), (1, 512), (64, 64)]:
        q = torch.randn(q_len, HQ, D, generator=g).bfloat16()
        k, v = (torch.randn(kv_len, HKV, D, generator=g).bfloat16() for _ in range(2))
        plans = dict(random_general_plans(q_len, kv_len))
        plans["full"] = SparsePlan.full(q_len, kv_len, HKV)
        hidden = torch.ones(HKV, kv_len, dtype=torch.bool)
        hidden[:, :10] = False  # when kv_len == q_len the first rows see nothing: fixed up after FlashInfer
        plans["prefix_hidden"] = SparsePlan.full(q_len, kv_len, HKV).with_visibility(hidden)
        plans.update({f"static{i}": SparsePlan(q_len, kv_len, HKV, sink=a, window=w, dense_rows=r)
                      for i, (a, w, r) in enumerate([(16, 40, 0), (5, 31, 30), (0, 20, 0), (40, 1, 7)])})  # fmt: skip
        for name, plan in plans.items():
            out, lse = fx.attend(q, k, v, plan, scale=D**-0.5)
            ref_out, ref_lse = torch_attend(q, k, v, plan, scale=D**-0.5)
            assert out.shape == ref_out.shape and out.dtype == q.dtype and lse.dtype == torch.float32
            _, excess, lse_err = gpu_check.compare(out, lse, ref_out, ref_lse, 1e-2, 1e-2)
            assert excess <= 0 and lse_err <= 1e-3, (q_len, kv_len, name, excess, lse_err)


SMALL = {
    "a_shape": {"budget": 48, "sink": 8},
    "tri_shape": {"budget": 48, "sink": 8, "last_q": 20},
    "minference": {"budget": 120, "vertical_size": 40, "last_q": 16, "min_q_len": 32},
    "flexprefill": {"budget": 32, "block_size": 16},
    "snapkv": {"budget": 64},
    "pyramidkv": {"budget": 64},
    "streamingllm": {"budget": 64, "sink": 16},
    "quest": {"budget": 64, "page_size": 8},
    "minference+snapkv": {"budget": 64, "minference.budget": 120, "vertical_size": 40, "min_q_len": 32},
}


def test_gpu_check_loop_on_cpu(fake_flashinfer, tmp_path, capsys):
    """The whole check loop with small method settings: every method, phase and oracle path."""
    args = gpu_check.parse_args(["--lengths", "200,300", "--oracle-full", "256", "--oracle-rows", "100"])
    rows = gpu_check.run(args, "cpu", timer=lambda fn: (fn(), 1.0)[1],
                         make_method=lambda name: get_method(name, **SMALL.get(name, {})))  # fmt: skip
    names = [*gpu_check.method_names(), *gpu_check.EXTRA_METHODS]
    got = {(r["method"], r["phase"], r["tokens"]) for r in rows}
    for length in (200, 300):
        for name, phase in [("full", "prefill"), ("minference", "prefill"), ("quest", "decode"),
                            ("quest", "extend"), ("snapkv", "compress"), ("kivi", "prefill"),
                            ("minference+snapkv", "compress")]:  # fmt: skip
            assert (name, phase, length) in got
    assert {r["method"] for r in rows} == set(names)
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    by = {(r["method"], r["phase"], r["tokens"]): r for r in rows}
    assert by[("minference", "prefill", 300)]["rows"] == 108  # start 200 rounded down to 192, a band edge
    assert by[("minference", "prefill", 200)]["rows"] == 200
    assert by[("flexprefill", "prefill", 300)]["rows"] == 108  # start 200 rounded down to 192, a block edge
    assert 0 < by[("kivi", "prefill", 300)]["quant_rel_err"] < 1
    assert by[("minference", "prefill", 300)]["density"] < 1
    out = capsys.readouterr().out
    assert "minference+snapkv" in out and "compress" in out
    rows[0]["lse_err"] = math.inf
    gpu_check.write_json(str(tmp_path / "r.json"), rows, device="cpu")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["device"] == "cpu" and len(data["rows"]) == len(rows) and data["rows"][0]["lse_err"] == "inf"


def test_modules_import_without_flashinfer():
    code = (
        "import sys, flashinfer_ext.flashinfer_executor, flashinfer_ext.gpu_check; "
        "print('flashinfer' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_attend_rejects_cpu_tensors():
    q, k = qk(8, 8)
    with pytest.raises(ValueError, match="CUDA"):
        fx.attend(q, k, k, SparsePlan.full(8, 8, HKV), scale=0.25)


def test_gpu_check_skips_without_cuda_or_flashinfer():
    if torch.cuda.is_available() and gpu_check.missing() is None:
        pytest.skip("CUDA and flashinfer are present here: the skip path does not apply")
    res = subprocess.run(
        [sys.executable, "-m", "flashinfer_ext.gpu_check"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(gpu_check.SKIP_LINE), res.stdout


@pytest.mark.gpu
def test_flashinfer_matches_torch_executor_on_cuda():
    pytest.importorskip("flashinfer")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from kvmethods.torch_executor import attend as torch_attend

    g = torch.Generator().manual_seed(4)
    q_len, kv_len, d = 300, 512, 128
    q = torch.randn(q_len, 8, d, generator=g).bfloat16()
    k = torch.randn(kv_len, 2, d, generator=g).bfloat16()
    v = torch.randn(kv_len, 2, d, generator=g).bfloat16()
    plans = dict(random_general_plans(q_len, kv_len))
    plans["full"] = SparsePlan.full(q_len, kv_len, 2)
    plans["a_shape"] = SparsePlan(q_len, kv_len, 2, sink=16, window=40)
    plans["tri_shape"] = SparsePlan(q_len, kv_len, 2, sink=5, window=31, dense_rows=100)
    for name, plan in plans.items():
        out, lse = fx.attend(q.cuda(), k.cuda(), v.cuda(), plan, scale=d**-0.5)
        ref_out, ref_lse = torch_attend(q, k, v, plan, scale=d**-0.5)
        _, excess, lse_err = gpu_check.compare(out, lse, ref_out, ref_lse, 1e-2, 1e-2)
        assert excess <= 0 and lse_err <= 1e-2, (name, excess, lse_err)

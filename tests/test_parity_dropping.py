"""KV dropping against the reference code: the same Q/K with GQA (8 query heads on 2 KV heads), in
bfloat16 and float32, give the same kept key sets per head as

- SCBench's SnapKVCluster / PyramidKVCluster / StreamingLLMKVCluster (tests/reference/
  scbench_kv_dropping.py, called as SCBench's KV cache calls them: K/V repeated to every query head)
  for the default heads="query";
- kvpress' SnapKVPress / StreamingLLMPress (tests/reference/kvpress_presses.py, and kvpress itself
  when its virtual environment exists) for heads="kv".

Index sets are compared, not counts. In bfloat16 the pooled scores tie at the selection boundary in
every head, so only the reference's own arithmetic (dtype casts, reduction order, torch.topk) picks
the same keys.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from kvmethods import get_method
from kvmethods.pyramidkv import pyramid_budgets
from tests.reference.kvpress_presses import PyramidKVPress, SnapKVPress, StreamingLLMPress
from tests.reference.scbench_kv_dropping import cluster_for, compress_first_prefill

HQ, HKV, D = 8, 2, 32
BUDGET, WINDOW, SINK, LAYERS = 64, 16, 8, 6
# Around SCBench's thresholds for budget 64, window 16: below the capacity (63), at it (64: SCBench
# compresses and keeps every key), PyramidKV's uniform band [64, 96) (65, 95), its lower edge
# (96), the band where max_num is capped at the context (100), and beyond.
LENGTHS = (63, 64, 65, 95, 96, 100, 300, 1000)
DTYPES = (torch.bfloat16, torch.float32)


def qk(length: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 7919 + length)
    q = torch.randn(length, HQ, D, generator=g)
    k = torch.randn(length, HKV, D, generator=g)
    k[length // 3] *= 4  # a standout key
    return q.to(dtype), k.to(dtype)


def hf_layout(x: torch.Tensor) -> torch.Tensor:
    """[L, H, D] -> [1, H, L, D] as HF attention holds it (a view of [1, L, H, D])."""
    return x[None].transpose(1, 2)


def positions(length: int, heads: int) -> torch.Tensor:
    """Values that carry each key's position, so the pruned values say which keys were kept."""
    return torch.arange(length)[None, None, :, None].expand(1, heads, length, D)


def as_mask(kept: torch.Tensor, length: int) -> torch.Tensor:
    """kept positions [H, n] -> bool [H, length]."""
    mask = torch.zeros(kept.shape[0], length, dtype=torch.bool)
    return mask.scatter_(1, kept, True)


def scbench_keep(method: str, q, k, *, layer: int = 0, num_layers: int = LAYERS, **attn_kwargs) -> torch.Tensor:
    cluster = cluster_for(method, num_layers=num_layers, layer_idx=layer, attn_kwargs=attn_kwargs)
    _, kept = compress_first_prefill(cluster, hf_layout(k), hf_layout(q), positions(q.shape[0], HKV), None, HQ // HKV)
    return as_mask(kept[0, :, :, 0], q.shape[0])


def kvpress_keep(press, q, k, *, layer: int = 0, num_layers: int = LAYERS) -> torch.Tensor:
    module = SimpleNamespace(
        config=SimpleNamespace(num_attention_heads=HQ, num_key_value_heads=HKV, num_hidden_layers=num_layers),
        head_dim=D, layer_idx=layer,
    )
    _, kept = press.compress(module, hf_layout(q), hf_layout(k), positions(q.shape[0], HKV), None,
                             {"position_embeddings": None})
    return as_mask(kept[0, :, :, 0], q.shape[0])


def ratio_for(budget: int, length: int) -> float:
    """The compression ratio that makes kvpress keep exactly `budget` of `length` keys."""
    return max(0.0, 1.0 - (budget + 0.5) / length)


# -- heads="query": SCBench ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("length", LENGTHS)
def test_snapkv_keeps_scbench_sets_per_query_head(length, dtype):
    q, k = qk(length, dtype)
    want = scbench_keep("snapkv", q, k, window_size=WINDOW, max_capacity_prompt=BUDGET)
    got = get_method("snapkv", budget=BUDGET, window=WINDOW).compress(q, k, layer=2, num_layers=LAYERS)
    assert got.shape == (HQ, length)
    assert torch.equal(got, want)
    assert got.sum(-1).tolist() == [min(BUDGET, length)] * HQ
    if length > 2 * BUDGET:  # query heads of one KV head choose differently: not one set per KV head
        assert not torch.equal(got[0], got[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("pooling", ["avgpool", "maxpool"])
def test_snapkv_pooling_and_kernel_match_scbench(pooling, dtype):
    q, k = qk(300, dtype, seed=3)
    want = scbench_keep("snapkv", q, k, window_size=8, max_capacity_prompt=40, kernel_size=3, pooling=pooling)
    got = get_method("snapkv", budget=40, window=8, kernel_size=3, pooling=pooling).compress(q, k)
    assert torch.equal(got, want)


def test_snapkv_window_counts_the_extend_queries_only():
    # The backend passes the extend's queries and every key (a cached prefix included): the window
    # is the extend's last `window` rows, at the last positions of the sequence.
    q, k = qk(300, torch.float32, seed=5)
    m = get_method("snapkv", budget=BUDGET, window=WINDOW)
    assert torch.equal(m.compress(q[-200:], k), m.compress(q, k))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("length", LENGTHS)
def test_pyramidkv_keeps_scbench_sets_in_every_layer(length, dtype):
    q, k = qk(length, dtype, seed=1)
    m = get_method("pyramidkv", budget=BUDGET, window=WINDOW)
    for layer in range(LAYERS):
        want = scbench_keep("pyramidkv", q, k, layer=layer, window_size=WINDOW, max_capacity_prompt=BUDGET)
        got = m.compress(q, k, layer=layer, num_layers=LAYERS)
        assert torch.equal(got, want), f"layer {layer}"
        assert got.sum(-1).tolist() == [pyramid_budgets(BUDGET, WINDOW, LAYERS, length, 20)[layer]] * HQ


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (63, [63] * LAYERS),  # shorter than the capacity: nothing dropped
        (64, [64] * LAYERS),
        (95, [64] * LAYERS),  # budget <= kv_len < 2 (budget - window): uniform SnapKV
        (96, [96, 84, 72, 60, 48, 36]),  # max_num capped at kv_len - window = 80, min_num 16, steps 12
        (1000, [110, 92, 74, 56, 38, 20]),  # min_num 48 // 20 = 2, max_num 94, steps 92 // 5 = 18
    ],
)
def test_pyramid_budgets_follow_scbench_integer_formulas(length, expected):
    assert pyramid_budgets(BUDGET, WINDOW, LAYERS, length, 20) == expected


def test_pyramid_budgets_at_scbench_scale():
    # Llama-3.1-8B (32 layers) on a 128K context with SCBench's settings: the reference's own
    # counts, from its cluster on a one-head, one-dimension tensor (cheap at this length).
    length, layers = 131_072, 32
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(length, 1, 1, generator=g), torch.randn(length, 1, 1, generator=g)
    budgets = pyramid_budgets(4096, 32, layers, length, 20)
    for layer in (0, 1, 15, 31):
        cluster = cluster_for("pyramidkv", num_layers=layers, layer_idx=layer)
        kept, _ = cluster.update_kv(hf_layout(k), hf_layout(q), hf_layout(k), None, 1)
        assert kept.shape[2] == budgets[layer]
    # min_num 4064 // 20 = 203, max_num 8128 - 203 = 7925, steps (7925 - 203) // 31 = 249
    assert (budgets[0], budgets[-1]) == (7925 + 32, 7925 - 31 * 249 + 32)
    assert sum(budgets) >= 4096 * layers  # floor steps: the mean is at least the budget


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("length", LENGTHS)
def test_streamingllm_keeps_scbench_sink_and_recent(length, dtype):
    q, k = qk(length, dtype, seed=2)
    # SCBench's n_init / n_local: window_size = n_local, max_capacity_prompt = n_init + n_local.
    want = scbench_keep("streamingllm", q, k, n_init=SINK, n_local=BUDGET - SINK)
    got = get_method("streamingllm", budget=BUDGET, sink=SINK).compress(q, k)
    assert torch.equal(got, want)


def test_defaults_are_scbench_settings():
    snap = cluster_for("snapkv")
    m = get_method("snapkv")
    assert (m.budget, m.window, m.kernel_size, m.pooling, m.heads) == (
        snap.max_capacity_prompt, snap.window_size, snap.kernel_size, snap.pooling, "query")
    pyr = cluster_for("pyramidkv", attn_kwargs={"beta": 5})  # SCBench never passes beta on
    p = get_method("pyramidkv")
    assert (p.budget, p.window, p.beta) == (pyr.max_capacity_prompt, pyr.window_size, pyr.beta)
    stream = cluster_for("streamingllm")
    s = get_method("streamingllm")
    assert (s.budget, s.sink) == (stream.max_capacity_prompt, stream.max_capacity_prompt - stream.window_size)


# -- heads="kv": kvpress -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("length", [65, 100, 300, 1000])
def test_snapkv_heads_kv_keeps_kvpress_sets(length, dtype):
    q, k = qk(length, dtype, seed=4)
    press = SnapKVPress(compression_ratio=ratio_for(BUDGET, length), window_size=WINDOW, kernel_size=5)
    got = get_method("snapkv", budget=BUDGET, window=WINDOW, heads="kv").compress(q, k)
    assert got.shape == (HKV, length)
    assert torch.equal(got, kvpress_keep(press, q, k))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_pyramidkv_heads_kv_scores_as_kvpress_with_scbench_budgets(dtype):
    q, k = qk(1000, dtype, seed=6)
    m = get_method("pyramidkv", budget=BUDGET, window=WINDOW, heads="kv")
    for layer, n in enumerate(pyramid_budgets(BUDGET, WINDOW, LAYERS, 1000, 20)):
        press = PyramidKVPress(compression_ratio=ratio_for(n, 1000), window_size=WINDOW)
        want = kvpress_keep(SnapKVPress(press.compression_ratio, WINDOW, 5), q, k, layer=layer)
        assert torch.equal(m.compress(q, k, layer=layer, num_layers=LAYERS), want)


@pytest.mark.parametrize("length", [65, 300])
def test_streamingllm_heads_kv_keeps_kvpress_sets(length):
    q, k = qk(length, torch.bfloat16, seed=7)
    press = StreamingLLMPress(compression_ratio=ratio_for(BUDGET, length), n_sink=SINK)
    got = get_method("streamingllm", budget=BUDGET, sink=SINK, heads="kv").compress(q, k)
    assert torch.equal(got, kvpress_keep(press, q, k))


def test_kvpress_layer_budgets_differ_from_scbench():
    # Why heads="kv" PyramidKV keeps SCBench's budgets: kvpress derives its own from a compression
    # ratio (float steps, rounding) and falls back to uniform SnapKV whenever min_num < window.
    # 64 of 1000 keys on average: kvpress keeps 64 in every layer (its min_num 64 / 20 < 16), SCBench
    # goes from 110 down to 20.
    config = SimpleNamespace(num_hidden_layers=LAYERS)
    press = PyramidKVPress(compression_ratio=1 - BUDGET / 1000, window_size=WINDOW)
    kvpress = [press.get_layer_budget(SimpleNamespace(config=config, layer_idx=i), 1000) for i in range(LAYERS)]
    assert kvpress == [BUDGET] * LAYERS
    assert pyramid_budgets(BUDGET, WINDOW, LAYERS, 1000, 20) == [110, 92, 74, 56, 38, 20]


KVPRESS_VENV = Path(__file__).resolve().parents[1] / ".cache" / "kvpress-venv"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("press", ["snapkv", "streamingllm"])
def test_heads_kv_keeps_what_kvpress_itself_keeps(press, dtype, tmp_path):
    python = KVPRESS_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no kvpress environment at {KVPRESS_VENV} (python -m benchmarks.kvpress_peer --setup makes it)")
    q, k = qk(300, dtype, seed=8)
    job = {"q": q, "k": k, "press": press, "budget": BUDGET, "window": WINDOW, "kernel_size": 5, "sink": SINK,
           "num_layers": LAYERS, "layer": 1}
    torch.save(job, tmp_path / "job.pt")
    script = Path(__file__).with_name("kvpress_select.py")
    done = subprocess.run([str(python), str(script), str(tmp_path / "job.pt"), str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    kept = json.loads((tmp_path / "out.json").read_text())["kept"]
    settings = {"window": WINDOW} if press == "snapkv" else {"sink": SINK}
    got = get_method(press, budget=BUDGET, heads="kv", **settings).compress(q, k, layer=1, num_layers=LAYERS)
    assert [row.nonzero().flatten().tolist() for row in got] == kept

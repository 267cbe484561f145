"""DuoAttention: retrieval heads and per-head masks equal duo-attention's own code
(tests/reference/duo_attention_patterns.py) for its published patterns and a GQA model of 8 query
heads on 2 KV heads; shipped patterns are verbatim and selected by the served model's name."""

import numpy as np
import pytest
import torch

from kvmethods import get_method
from kvmethods.duoattention import PATTERNS_DIR, DuoAttention, load_pattern, published_pattern, retrieval_heads
from tests.reference.duo_attention_patterns import generate_streaming_mask, load_attn_pattern, sparsify_attention_heads

SHIPPED = [
    "Llama-2-7B-32K-Instruct", "Llama-3-8B-Instruct-Gradient-1048k", "Llama-3-8B-Instruct-Gradient-4194k",
    "Meta-Llama-3.1-8B-Instruct", "Mistral-7B-Instruct-v0.2", "Mistral-7B-Instruct-v0.3",
]
CALIBRATED = ["SmolLM2-135M-Instruct"]  # `cli.py calibrate duoattention` on the embedded model


def test_every_published_pattern_is_shipped_and_named_in_the_readme():
    assert sorted(d.name for d in PATTERNS_DIR.iterdir() if d.is_dir()) == sorted(SHIPPED + CALIBRATED)
    readme = (PATTERNS_DIR / "README.md").read_text()
    assert "fe93c314ae87306ef6629dc16713250b4718ffe7" in readme and "MIT" in readme
    assert all(f"| {name} |" in readme for name in SHIPPED + CALIBRATED)
    embedded = load_pattern(str(PATTERNS_DIR / "SmolLM2-135M-Instruct"))
    assert embedded.shape == (30, 3) and ((embedded >= 0) & (embedded <= 1)).all()


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_retrieval_heads_equal_duo_attention(name, sparsity):
    heads, sink, recent = load_attn_pattern(str(PATTERNS_DIR / name))
    assert (sink, recent) == (128, 256)  # what the patterns were trained with
    np.random.seed(0)
    expected, _ = sparsify_attention_heads(heads.copy(), sparsity=sparsity)
    ours = retrieval_heads(load_pattern(str(PATTERNS_DIR / name)), sparsity)
    assert torch.equal(load_pattern(str(PATTERNS_DIR / name)), torch.from_numpy(heads))
    # The reference breaks ties with noise below 1e-6; a pattern's tied scores at the bar can differ.
    tied = np.isclose(heads, np.quantile(heads, sparsity), atol=1e-6, rtol=0) if 0 < sparsity < 1 else np.zeros_like(heads, bool)
    assert np.array_equal(ours.numpy()[~tied], expected.astype(bool)[~tied])


def write_pattern(path, scores: np.ndarray):
    path.mkdir(parents=True, exist_ok=True)
    np.savetxt(path / "full_attention_heads.tsv", scores, delimiter="\t")
    (path / "config.json").write_text('{"sink_size": 8, "recent_size": 16}')
    return path


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_per_head_masks_equal_duo_attention_gqa(tmp_path, sparsity):
    layers, hq, hkv, d, kv_len, sink, recent = 3, 8, 2, 16, 100, 8, 16
    scores = np.random.default_rng(1).uniform(size=(layers, hkv))
    pattern = write_pattern(tmp_path / "p", scores)
    np.random.seed(0)
    full, _ = sparsify_attention_heads(load_attn_pattern(str(pattern))[0], sparsity=sparsity)
    streaming_row = generate_streaming_mask(kv_len, sink, recent, "cpu")[0, 0, kv_len - 1, :kv_len]
    method = DuoAttention(budget=sink + recent, sink=sink, sparsity=sparsity, pattern=str(pattern))
    q, k = torch.randn(4, hq, d), torch.randn(kv_len, hkv, d)
    for layer in range(layers):
        keep = method.compress(q, k, layer=layer, num_layers=layers)
        assert keep.shape == (hkv, kv_len)
        for head in range(hkv):
            # the last context query's keys in duo-attention: all for a full head, sink + recent otherwise
            want = torch.ones(kv_len, dtype=torch.bool) if full[layer, head] else streaming_row
            assert torch.equal(keep[head], want), (layer, head)
    assert 0 < sum(not full[l, h] for l in range(layers) for h in range(hkv)) < layers * hkv


def test_short_context_kept_whole_and_pattern_shape_checked(tmp_path):
    pattern = write_pattern(tmp_path / "p", np.zeros((2, 2)))
    method = DuoAttention(budget=32, sink=4, pattern=str(pattern))
    assert method.compress(torch.randn(2, 8, 4), torch.randn(32, 2, 4), layer=0, num_layers=2).all()
    with pytest.raises(ValueError, match=r"is \(2, 2\), the model has 3 layers x 2 KV heads"):
        method.compress(torch.randn(2, 8, 4), torch.randn(40, 2, 4), layer=0, num_layers=3)
    with pytest.raises(ValueError, match="no pattern at"):
        DuoAttention(pattern=str(tmp_path / "missing")).compress(torch.randn(2, 8, 4), torch.randn(400, 2, 4), layer=0, num_layers=2)


def test_pattern_selected_by_served_model_name():
    assert published_pattern("/models/meta-llama/Meta-Llama-3.1-8B-Instruct/") == PATTERNS_DIR / "Meta-Llama-3.1-8B-Instruct"
    assert published_pattern("meta-llama/Llama-3.1-8B-Instruct") == PATTERNS_DIR / "Meta-Llama-3.1-8B-Instruct"
    assert published_pattern("mistralai/mistral-7b-instruct-v0.3") == PATTERNS_DIR / "Mistral-7B-Instruct-v0.3"
    assert published_pattern("/cache/models/SmolLM2-135M-Instruct") == PATTERNS_DIR / "SmolLM2-135M-Instruct"
    assert published_pattern("HuggingFaceTB/SmolLM2-360M-Instruct") is None
    method = get_method("duoattention")
    assert (method.budget, method.sink, method.sparsity, method.pattern) == (320, 64, 0.5, "auto")
    assert method.for_model("mistralai/Mistral-7B-Instruct-v0.2").pattern == str(PATTERNS_DIR / "Mistral-7B-Instruct-v0.2")
    assert method.for_model("some/unknown-model").pattern == "prefill"
    explicit = method.replace(pattern="/p")
    assert explicit.for_model("mistralai/Mistral-7B-Instruct-v0.2") is explicit


def test_prefill_pattern_streams_the_local_heads():
    """Without a stored pattern each layer scores its heads on the prefill: a head whose last
    queries look far back stays whole, a head that looks only at its recent keys streams."""
    kv_len, d = 200, 8
    k = torch.zeros(kv_len, 2, d)
    q = torch.zeros(32, 8, d)
    k[50, 0, 0] = 10.0  # KV head 0: every query of its group attends key 50, far back
    q[:, :4, 0] = 10.0
    keep = DuoAttention(budget=40, sink=4, sparsity=0.5, pattern="prefill").compress(q, k)
    assert keep[0].all() and keep[1].sum() == 40 and keep[1, :4].all() and keep[1, -36:].all()

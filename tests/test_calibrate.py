"""`calibrate duoattention`: a valid DuoAttention pattern from the tiny model, deterministic for a
seed, that the method loads and applies."""

import json

import pytest
import torch

from kvmethods.duoattention import DuoAttention, load_pattern, retrieval_heads
from kvmethods.duoattention_calibration import CalibrationSettings, calibrate, far_attention, passkey_sample
from tests.test_cli import cli

SMALL = CalibrationSettings(samples=2, context_tokens=200, passkeys=2, sink=4, recent=32, seed=3)


def test_far_attention_counts_what_a_streaming_head_would_not_see():
    probs = torch.zeros(4, 10, 10)  # 4 query heads on 2 KV heads, 10 positions
    probs[0, 9, 5] = 0.7  # head 0 (KV head 0): row 9 attends key 5, outside sink 2 + recent 3
    probs[0, 9, 9] = 0.3
    probs[2, 9, 8] = 1.0  # head 2 (KV head 1): only recent keys
    probs[3, 8, 1] = 1.0  # a sink key
    assert far_attention(probs, torch.tensor([8, 9]), sink=2, recent=3, num_kv_heads=2).tolist() == pytest.approx([0.7, 0.0])


def test_passkey_sample_has_its_keys_far_back(tiny_tokenizer):
    import random

    ids, start = passkey_sample(tiny_tokenizer, SMALL, random.Random(0))
    assert abs(len(ids) - SMALL.context_tokens) < 20 and start < len(ids)
    answer = tiny_tokenizer.decode(ids[start:])
    first_key = answer.strip().split(",")[0]
    assert tiny_tokenizer.decode(ids[: start - SMALL.recent]).count(first_key) >= 1


def test_calibration_is_a_valid_deterministic_pattern(tiny_model_path, tmp_path):
    scores = calibrate(str(tiny_model_path), SMALL)
    assert scores.shape == (2, 2) and scores.dtype == torch.float32
    assert ((scores >= 0) & (scores <= 1)).all() and scores.sum() > 0
    assert torch.equal(scores, calibrate(str(tiny_model_path), SMALL))
    assert not torch.equal(scores, calibrate(str(tiny_model_path), CalibrationSettings(**{**SMALL.__dict__, "seed": 4})))


def test_calibrate_command_writes_a_pattern_the_method_applies(tiny_model_path, tmp_path):
    out = tmp_path / "pattern"
    done = cli("calibrate", "duoattention", "--model", str(tiny_model_path), "--out", str(out), "--samples", "2",
               "--context-tokens", "200", "--passkeys", "2", "--sink", "4", "--recent", "32", "--seed", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"duoattention.pattern={out.resolve()}" in done.stdout
    config = json.loads((out / "config.json").read_text())
    assert (config["sink_size"], config["recent_size"], config["seed"]) == (4, 32, 3)
    scores = load_pattern(str(out)).float()
    assert torch.allclose(scores, calibrate(str(tiny_model_path), SMALL), atol=1e-6)
    method = DuoAttention(budget=36, sink=4, pattern=str(out))
    keep = method.compress(torch.randn(4, 4, 16), torch.randn(100, 2, 16), layer=1, num_layers=2)
    retrieval = retrieval_heads(scores, 0.5)[1]
    for head in range(2):
        assert keep[head].sum() == (100 if retrieval[head] else 36)


def test_calibrate_rejects_a_context_inside_the_window(tiny_model_path):
    done = cli("calibrate", "duoattention", "--model", str(tiny_model_path), "--context-tokens", "100")
    assert done.returncode == 2 and "must exceed --sink + --recent" in done.stderr

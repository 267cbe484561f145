"""The gold-answer likelihood a bench records equals transformers' for the same prompt and answer,
on every turn of both modes, read through the session's own cached KV; and measuring it changes
nothing the session does (predictions, cache reuse)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from programs.prompts import answer_text
from tests.conftest import same_reuse

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def hf_model(tiny_model_path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()


def hf_scores(model, tokenizer, prompt: str, gold: str) -> tuple[float, float]:
    prompt_ids = tokenizer.encode(prompt)
    gold_ids = tokenizer.encode(gold, add_special_tokens=False)
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + gold_ids])).logits[0].float()
    rows = torch.log_softmax(logits, -1)[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(gold_ids)]
    target = torch.tensor(gold_ids)
    return -float(rows.gather(1, target[:, None]).mean()), float((rows.argmax(-1) == target).float().mean())


@pytest.fixture(scope="module")
def sample(connection):
    from data.generators import generate_kv, token_counter

    return generate_kv(token_counter(connection.tokenizer), num_samples=1, context_tokens=400, num_turns=3, seed=5)[0]


def turn_prompts(connection, sample, mode: str) -> list[str]:
    """Each turn's exact prompt text, as the program sends it."""
    from programs.prompts import session_prompts
    from programs.registry import get_task

    text = session_prompts(get_task("kv"), sample, connection.chat_format, "official", None)
    if mode == "multi-request":
        return [text.context() + text.question(i) for i in range(len(sample.turns))]
    prompts = [text.first_turn()]
    for i in range(1, len(sample.turns)):
        prompts.append(prompts[-1] + text.follow_up(i, sample.turns[i - 1].answer))
    return prompts


@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
def test_recorded_gold_nll_equals_transformers_and_changes_nothing(connection, hf_model, sample, mode):
    from bench.runner import BenchSpec, run_session
    from data.generators import token_counter
    from programs.registry import get_task

    spec = BenchSpec(max_seq_len=None)
    count = token_counter(connection.tokenizer)
    # Each run starts from an empty cache, so its reuse comes from itself, not from the run before.
    connection.backend.flush_cache()
    probed = run_session(connection, get_task("kv"), sample, mode, spec, count)
    connection.backend.flush_cache()
    plain = run_session(connection, get_task("kv"), sample, mode, replace(spec, gold_likelihood=False), count)
    assert probed.error is None and not probed.notes, probed.notes
    assert len(probed.records) == 3  # turn 1, and later turns over the session's cache
    for record, prompt, turn in zip(probed.records, turn_prompts(connection, sample, mode), sample.turns):
        want_nll, want_acc = hf_scores(hf_model, connection.tokenizer, prompt, answer_text(turn.answer))
        assert record.gold_nll == pytest.approx(want_nll, rel=1e-3, abs=1e-3)
        assert record.gold_token_acc == pytest.approx(want_acc)
        assert record.gold_tokens == len(connection.tokenizer.encode(answer_text(turn.answer), add_special_tokens=False))
    # The probes left nothing a later turn could see: same answers, same cache reuse turn by turn.
    assert [r.prediction for r in probed.records] == [r.prediction for r in plain.records]
    for a, b in zip(probed.records, plain.records, strict=True):
        assert same_reuse(mode, a.cached_tokens, b.cached_tokens), ([r.cached_tokens for r in probed.records],
                                                                    [r.cached_tokens for r in plain.records])
    assert all(r.gold_nll is None for r in plain.records)

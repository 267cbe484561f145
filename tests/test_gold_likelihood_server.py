"""The server's gold-answer likelihood equals transformers' for the same prompt and answer, in both
modes and on a later multi-turn turn, read through the session's own cached KV."""

from __future__ import annotations

import pytest
import torch

from programs.base import SENT
from programs.likelihood import gold_likelihood
from programs.prompts import answer_text

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


@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
def test_gold_nll_equals_transformers(connection, hf_model, mode):
    from data.generators import generate_kv, token_counter
    from programs import get_program

    tokenizer = connection.tokenizer
    sample = generate_kv(token_counter(tokenizer), num_samples=1, context_tokens=400, num_turns=3, seed=5)[0]
    namespace = f"gold-nll-{mode}"
    state = get_program("kv", mode).run(sample=sample, backend=connection.backend.for_session(namespace))
    results = state.ret_value
    for turn in (0, 2):  # the first turn, and a later one over the session's cache
        _, sent = results[turn][SENT]
        gold = answer_text(sample.turns[turn].answer)
        got = gold_likelihood(connection.url, tokenizer, sent, gold, namespace)
        want_nll, want_acc = hf_scores(hf_model, tokenizer, sent, gold)
        assert got.nll == pytest.approx(want_nll, rel=1e-3, abs=1e-3)
        assert got.token_acc == pytest.approx(want_acc)
        assert got.cached_tokens == len(tokenizer.encode(sent)) - 1  # the session's cached prompt, all of it

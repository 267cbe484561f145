"""The task programs against the real SGLang runtime (CPU engine) on the tiny model."""

from __future__ import annotations

import pytest

from data.generators import generate_kv, token_counter
from programs import get_program

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def kv_sample(connection):
    (sample,) = generate_kv(token_counter(connection.tokenizer), num_samples=1, context_tokens=1200, num_turns=3, seed=11)
    return sample


def run(connection, mode, sample, **kwargs):
    connection.backend.flush_cache()  # each run's reuse must come from itself
    state = get_program("kv", mode).run(backend=connection.backend, sample=sample, chat=connection.chat, **kwargs)
    assert state.error() is None
    return state.ret_value


@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
def test_every_turn_answers_and_reuses_the_shared_context(connection, kv_sample, mode):
    results = run(connection, mode, kv_sample)
    context_tokens = token_counter(connection.tokenizer)(kv_sample.context)
    assert [r["turn"] for r in results] == [0, 1, 2]
    for r in results:
        assert isinstance(r["prediction"], str) and r["completion_tokens"] > 0
        assert r["prompt_tokens"] > context_tokens
    # multi-request commits the context first, so even its first request finds it cached; in
    # multi-turn the first prefill holds context + question 1, and every later turn reuses it.
    reusing = results if mode == "multi-request" else results[1:]
    for r in reusing:
        assert r["cached_tokens"] >= context_tokens, r
    if mode == "multi-turn":
        assert results[0]["cached_tokens"] < context_tokens


def test_multi_turn_history_grows_by_each_gold_answer(connection, kv_sample):
    results = run(connection, "multi-turn", kv_sample)
    prompts = [r["prompt_tokens"] for r in results]
    assert prompts[0] < prompts[1] < prompts[2]
    # Turn i+1 starts with turn i's whole prompt (gold history), which is cached.
    for earlier, later in zip(results, results[1:]):
        assert later["cached_tokens"] >= earlier["prompt_tokens"] - 1


def test_multi_request_questions_are_independent(connection, kv_sample):
    results = run(connection, "multi-request", kv_sample)
    prompts = [r["prompt_tokens"] for r in results]
    # Each request is context + its own question: no earlier Q/A accumulates.
    assert max(prompts) - min(prompts) < 20


def test_model_history_feeds_back_the_models_answer(connection, kv_sample):
    gold = run(connection, "multi-turn", kv_sample, history="gold")
    model = run(connection, "multi-turn", kv_sample, history="model")
    # Same first turn; from turn 2 on the history differs (model answers are 150 tokens here).
    assert model[0]["prediction"] == gold[0]["prediction"]
    assert model[1]["prompt_tokens"] != gold[1]["prompt_tokens"]


def test_max_turns_limits_the_session(connection, kv_sample):
    assert len(run(connection, "multi-request", kv_sample, max_turns=2)) == 2


def test_plain_text_mode_without_chat_template(connection, kv_sample):
    connection.backend.flush_cache()
    state = get_program("kv", "multi-turn").run(backend=connection.backend, sample=kv_sample, chat=False, max_turns=2)
    assert state.error() is None
    assert "<|im_start|>" not in state.text()
    assert len(state.ret_value) == 2

"""Every SCBench task, in both modes, through the real SGLang runtime on the tiny model (fixtures)."""

from __future__ import annotations

import pytest

from data.generators import token_counter
from data.loader import configs, load_samples
from programs import get_program, get_task

pytestmark = pytest.mark.server


@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
@pytest.mark.parametrize("config", configs())
def test_task_answers_every_turn_and_reuses_the_context(connection, config, mode):
    task = get_task(config)
    (sample,) = load_samples(config, "fixtures", limit=1)
    connection.backend.flush_cache()
    state = get_program(task.name, mode).run(backend=connection.backend, sample=sample, chat=connection.chat)
    assert state.error() is None
    results = state.ret_value
    context_tokens = token_counter(connection.tokenizer)(sample.context)
    assert [r["turn"] for r in results] == list(range(len(sample.turns)))
    for i, (result, turn) in enumerate(zip(results, sample.turns)):
        assert result["completion_tokens"] > 0
        assert result["completion_tokens"] <= task.max_tokens(turn)
        if mode == "multi-request" or i > 0:  # multi-turn's first prefill is the cold one
            assert result["cached_tokens"] >= context_tokens, (config, mode, result)
        for scoring in ("official", "fixed"):
            assert 0.0 <= task.score(result["prediction"], turn, sample, scoring) <= 1.0

"""Retr.KV: the offline generator and the task's scorer."""

from __future__ import annotations

import json

import pytest

from data.generators.kv import generate_kv
from data.sample import Sample, Turn, sample_from_row
from programs import get_task


def words(text: str) -> int:
    """A crude token counter: good enough to test sizing logic without a tokenizer."""
    return len(text.replace('"', " ").replace(":", " ").replace(",", " ").split())


def test_same_seed_same_samples_and_other_seed_differs():
    a = generate_kv(words, num_samples=2, context_tokens=300, num_turns=3, seed=7)
    b = generate_kv(words, num_samples=2, context_tokens=300, num_turns=3, seed=7)
    c = generate_kv(words, num_samples=2, context_tokens=300, num_turns=3, seed=8)
    assert a == b
    assert a[0].context != c[0].context
    assert a[0].context != a[1].context  # samples of one set differ too


@pytest.mark.parametrize("budget", [120, 500, 1500])
def test_context_fits_the_budget_and_fills_it(budget):
    (sample,) = generate_kv(words, num_samples=1, context_tokens=budget, num_turns=2, seed=0)
    assert words(sample.context) <= budget
    # One more pair (2 uuids + JSON punctuation) would not fit: the budget is nearly used.
    assert words(sample.context) > budget - 3


def test_every_turn_asks_a_key_whose_value_is_the_gold():
    (sample,) = generate_kv(words, num_samples=1, context_tokens=800, num_turns=4, seed=3)
    obj = json.loads(sample.context.removeprefix("JSON data:\n"))
    assert len(obj) == sample.metadata["num_pairs"]
    keys = list(obj)
    positions = []
    for turn in sample.turns:
        key = turn.question.split('"')[1]
        assert obj[key] == turn.answer
        positions.append(keys.index(key) / len(keys))
    # Spread over the object: first key in the first quarter, last in the last quarter.
    assert positions == sorted(positions)
    assert positions[0] < 0.25 and positions[-1] >= 0.75


def test_too_small_budget_is_a_clear_error():
    with pytest.raises(ValueError, match="fits only"):
        generate_kv(words, num_samples=1, context_tokens=5, num_turns=3, seed=0)


def test_generated_sample_round_trips_through_the_row_schema():
    (sample,) = generate_kv(words, num_samples=1, context_tokens=200, num_turns=2, seed=0)
    assert sample_from_row(json.loads(json.dumps(sample.to_row()))) == sample


def test_kv_scorer_is_case_sensitive_substring():
    task = get_task("kv")
    sample = Sample(id="s", context="{}", turns=())
    turn = Turn(question="q", answer="ab12-CD")
    assert task.score("the value is ab12-CD.", turn, sample) == 1.0
    assert task.score("the value is ab12-cd.", turn, sample) == 0.0
    assert task.score("", turn, sample) == 0.0


def test_kv_prompt_matches_scbench():
    task = get_task("scbench_kv")  # the HF config name resolves too
    sample = Sample(id="s", context="JSON data:\n{}", turns=())
    assert task.shared_prefix(sample) == (
        "Extract the value corresponding to the specified key in the JSON object below.\n\nJSON data:\n{}"
    )
    assert task.max_new_tokens == 150

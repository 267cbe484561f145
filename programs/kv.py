"""Retr.KV (`scbench_kv`): find the value of a UUID key in a large JSON object.

Metric (SCBench): the gold value appears in the output, case-sensitive.
"""

from __future__ import annotations

from data.sample import Sample, Turn
from programs.base import TaskSpec
from programs.registry import register_task


def substring_match(prediction: str, turn: Turn, sample: Sample) -> float:
    return 1.0 if str(turn.answer) in prediction else 0.0


KV = register_task(
    TaskSpec(
        name="kv",
        config="scbench_kv",
        category="String Retrieval",
        instruction="Extract the value corresponding to the specified key in the JSON object below.\n\n{context}",
        max_new_tokens=150,
        scorer=substring_match,
    )
)

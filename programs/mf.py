"""Math.Find (`scbench_mf`): a statistic of a long integer array. Metric: the first number in the
output equals the gold integer (officially unsigned, so a negative gold never matches; `fixed` reads
a minus sign). Its hub rows hold the array itself as `context`.

SCBench asks "What is <statistic>?" before the array, the statistic taken from the turn's input by
the pattern `The .+ is`, and again before every later question. Two quirks of its runner, kept by
the `official` prompt style and corrected by `fixed`: the chat follow-ups of multi-turn sessions all
ask the *last* turn's statistic (a list comprehension reads the loop variable left over), and the
multi-request context starts with turn 1's whole input instead of "What is <statistic>?".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from data.generators.mf import generate_mf
from data.sample import Sample, Turn
from data.schema import HubSchema
from programs.metrics.numeric import first_number_match
from programs.metrics.scorers import on_answer
from programs.prompts import MULTI_REQUEST, OFFICIAL, turn_fields
from programs.registry import register_task
from programs.spec import TaskSpec

_TARGET = re.compile(r"The .+ is")


def statistic(turn: Turn) -> str:
    """'The largest number of the list is' -> 'the largest number of the list'."""
    found = _TARGET.findall(turn.question)
    if not found:
        raise ValueError(f"Math.Find question has no 'The ... is' phrase: {turn.question!r}")
    return found[0].lower()[: -len(" is")]


def ask(turn: Turn) -> str:
    return f"What is {statistic(turn)}?"


@dataclass(frozen=True)
class MathFindSpec(TaskSpec):
    """Math.Find's `{prefix}` field, as SCBench's runner fills it."""

    def context_fields(self, sample: Sample, mode: str, style: str) -> dict[str, Any]:
        first = sample.turns[0]
        if mode == MULTI_REQUEST and style == OFFICIAL:
            return {"prefix": first.question}
        return {"prefix": ask(first)}

    def question_fields(self, sample: Sample, index: int, *, chat_follow_up: bool, style: str) -> dict[str, Any]:
        asked = sample.turns[-1] if chat_follow_up and style == OFFICIAL else sample.turns[index]
        return {**turn_fields(sample.turns[index]), "prefix": ask(asked)}


MF = register_task(
    MathFindSpec(
        name="mf",
        config="scbench_mf",
        category="Global Information",
        context_template="{prefix}\n\n{context}",
        question_template="{prefix}\n\n{input}",
        first_question_template="{input}",
        max_new_tokens=5,
        scorer=on_answer(first_number_match),
        fixed_scorer=on_answer(first_number_match, signed=True),
        hub_schema=HubSchema(context_is_list=True),
        generator=generate_mf,
    )
)

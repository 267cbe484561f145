"""Math.Find (`scbench_mf`): a statistic of a long integer array. Metric: the first number in the
output equals the gold integer.

SCBench asks "What is <statistic>?" before the array, the statistic taken from the turn's input by
the pattern `The .+ is`. Here the shared prefix asks the first turn's statistic (so it is the same
text in both modes); every later question, and every multi-request question, asks its own again.
"""

import re

from data.sample import Sample, Turn
from programs.base import TaskSpec
from programs.registry import register_task

_TARGET = re.compile(r"The .+ is")


def statistic(turn: Turn) -> str:
    """'The largest number of the list is' -> 'the largest number of the list'."""
    found = _TARGET.findall(turn.question)
    if not found:
        raise ValueError(f"Math.Find question has no 'The ... is' phrase: {turn.question!r}")
    return found[0].lower()[: -len(" is")]


MF = register_task(
    TaskSpec(
        name="mf",
        config="scbench_mf",
        category="Global Information",
        instruction="What is {target}?\n\n{context}",
        prefix_fields=lambda sample: {"target": statistic(sample.turns[0])},
        query_template="What is {target}?\n\n{input}",
        first_query_template="{input}",
        query_fields=lambda turn: {"target": statistic(turn)},
        max_new_tokens=5,
    )
)

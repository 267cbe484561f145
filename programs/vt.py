"""Retr.MultiHop (`scbench_vt`): RULER variable tracking; each turn asks one chain's variables.
Metric: fraction of gold names in the output (case-insensitive), rounded to 2 places.

The gold answer is a list of names; SCBench writes it into the history as a Python list
("['A', 'B']"), the `fixed` prompt style as "A, B"."""

from programs.base import TaskSpec
from programs.registry import register_task

VT = register_task(
    TaskSpec(name="vt", config="scbench_vt", category="String Retrieval", context_template="{context}", max_new_tokens=30)
)

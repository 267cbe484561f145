"""Retr.MultiHop (`scbench_vt`): RULER variable tracking; each turn asks one chain's variables.
Metric: fraction of gold names in the output (case-insensitive), rounded to 2 places."""

from programs.base import TaskSpec
from programs.registry import register_task

VT = register_task(
    TaskSpec(name="vt", config="scbench_vt", category="String Retrieval", instruction="{context}", max_new_tokens=30)
)

"""Retr.Prefix-Suffix (`scbench_prefix_suffix`): find the dictionary string with a given prefix and
suffix (the instructions live in the data). Metric: gold substring, case-sensitive."""

from programs.base import TaskSpec
from programs.registry import register_task

PREFIX_SUFFIX = register_task(
    TaskSpec(name="prefix_suffix", config="scbench_prefix_suffix", category="String Retrieval", context_template="{context}", max_new_tokens=150)
)

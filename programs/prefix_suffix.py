"""Retr.Prefix-Suffix (`scbench_prefix_suffix`): find the dictionary string with a given prefix and
suffix (the instructions live in the data). Metric: gold substring, case-sensitive (both modes).

Its hub rows have no `id` (the runner numbers them by position)."""

from data.generators.prefix_suffix import generate_prefix_suffix
from data.schema import HubSchema
from programs.metrics.scorers import on_answer
from programs.metrics.text import substring_match
from programs.registry import register_task
from programs.spec import TaskSpec

PREFIX_SUFFIX = register_task(
    TaskSpec(
        name="prefix_suffix",
        config="scbench_prefix_suffix",
        category="String Retrieval",
        context_template="{context}",
        max_new_tokens=150,
        scorer=on_answer(substring_match),
        hub_schema=HubSchema(has_id=False),
        generator=generate_prefix_suffix,
    )
)

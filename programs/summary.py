"""En.Sum (`scbench_summary`): summarise one of several concatenated papers. Metric: ROUGE-Lsum F."""

from programs.base import TaskSpec
from programs.registry import register_task

SUMMARY = register_task(
    TaskSpec(name="summary", config="scbench_summary", category="Global Information", instruction="{context}", max_new_tokens=200)
)

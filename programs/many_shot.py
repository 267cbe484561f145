"""ICL.ManyShot (`scbench_many_shot`): ~150 BBH demonstrations, then new questions with options.
Metric: official = any character of the gold in the output (very lenient); `fixed` = letter match."""

from programs.base import TaskSpec
from programs.registry import register_task

MANY_SHOT = register_task(
    TaskSpec(name="many_shot", config="scbench_many_shot", category="Global Information", context_template="{context}", max_new_tokens=10)
)

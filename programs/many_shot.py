"""ICL.ManyShot (`scbench_many_shot`): ~150 BBH demonstrations, then new questions with options.
Metric: official = any character of the gold in the output (very lenient); `fixed` = the chosen
option letter equals the gold letter."""

from data.schema import HubSchema
from programs.metrics.choice import many_shot_fixed, many_shot_official
from programs.metrics.scorers import on_answer
from programs.registry import register_task
from programs.spec import TaskSpec

MANY_SHOT = register_task(
    TaskSpec(
        name="many_shot",
        config="scbench_many_shot",
        category="Global Information",
        context_template="{context}",
        max_new_tokens=10,
        scorer=on_answer(many_shot_official),
        fixed_scorer=on_answer(many_shot_fixed),
        hub_schema=HubSchema(row_fields=("task",)),
    )
)

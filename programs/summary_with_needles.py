"""Mix.Sum+NIAH (`scbench_summary_with_needles`): summary turns and passkey turns alternate over
documents with passkeys between them. Each turn is scored by its own sub-task's metric: ROUGE-Lsum
("scbench_summary" turns), first integer equals the passkey ("scbench_passkey"; officially a gold
stored as a number never equals, `fixed` compares it through `str()`)."""

from data.generators.summary_with_needles import generate_summary_with_needles
from data.schema import HubSchema
from programs.metrics.numeric import first_int_match
from programs.metrics.scorers import by_sub_task, on_answer
from programs.metrics.text import rouge_lsum_f
from programs.registry import register_task
from programs.spec import TaskSpec

SUMMARY_WITH_NEEDLES = register_task(
    TaskSpec(
        name="summary_with_needles",
        config="scbench_summary_with_needles",
        category="Multi-task",
        context_template="{context}",
        max_new_tokens={"scbench_summary": 800, "scbench_passkey": 15},
        scorer=by_sub_task({"scbench_summary": on_answer(rouge_lsum_f), "scbench_passkey": on_answer(first_int_match)}),
        fixed_scorer=by_sub_task({
            "scbench_summary": on_answer(rouge_lsum_f),
            "scbench_passkey": on_answer(first_int_match, coerce=True),
        }),
        hub_schema=HubSchema(turn_fields=("task",)),
        generator=generate_summary_with_needles,
    )
)

"""Mix.Sum+NIAH (`scbench_summary_with_needles`): summary turns and passkey turns alternate over
documents with passkeys between them. Each turn is scored by its own sub-task's metric
(ROUGE-Lsum / first integer equals the passkey)."""

from programs.base import TaskSpec
from programs.registry import register_task

SUMMARY_WITH_NEEDLES = register_task(
    TaskSpec(
        name="summary_with_needles",
        config="scbench_summary_with_needles",
        category="Multi-task",
        context_template="{context}",
        max_new_tokens={"scbench_summary": 800, "scbench_passkey": 15},
    )
)

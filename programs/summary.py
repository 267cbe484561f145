"""En.Sum (`scbench_summary`): summarise one of several concatenated papers. Metric: ROUGE-Lsum F
(both modes).

SCBench starts the assistant's reply of every chat follow-up (multi-turn, turns 2 on) with "This
paper"; the `fixed` prompt style does not.
"""

from programs.metrics.scorers import on_answer
from programs.metrics.text import rouge_lsum_f
from programs.registry import register_task
from programs.spec import TaskSpec

SUMMARY = register_task(
    TaskSpec(
        name="summary",
        config="scbench_summary",
        category="Global Information",
        context_template="{context}",
        max_new_tokens=200,
        chat_answer_lead="This paper",
        scorer=on_answer(rouge_lsum_f),
    )
)

"""En.MultiChoice (`scbench_choice_eng`): four-option questions over a novel. Metric: the chosen
letter (leading A-D, else after "answer is" / "answer:") matches the gold option (both modes). The
official ground truth is `[option text, letter]`.

The prompts keep SCBench's wording, including its "The the correct answer is" lead-in, and its
plain-text follow-ups' different "The letter of the correct answer is" (the `fixed` prompt style
uses the first lead-in everywhere).
"""

from data.schema import HubSchema
from programs.metrics.scorers import choice_ground_truth, choice_scorer
from programs.registry import register_task
from programs.spec import TaskSpec

_OPTIONS = "Question: {question}\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\n"

CHOICE_ENG = register_task(
    TaskSpec(
        name="choice_eng",
        config="scbench_choice_eng",
        category="Semantic Retrieval",
        context_template="Read the book and answer the question.\n\n{context}",
        question_template=_OPTIONS + "The the correct answer is",
        follow_up_template="{pre_ans}\n\n" + _OPTIONS + "The letter of the correct answer is",
        max_new_tokens=40,
        scorer=choice_scorer,
        ground_truth=choice_ground_truth,
        hub_schema=HubSchema(turn_fields=("options",)),
    )
)

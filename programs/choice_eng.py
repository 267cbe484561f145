"""En.MultiChoice (`scbench_choice_eng`): four-option questions over a novel. Metric: the chosen
letter (leading A-D, else after "answer is" / "answer:") matches the gold option.

The prompts keep SCBench's wording, including its "The the correct answer is" lead-in, and its
plain-text follow-ups' different "The letter of the correct answer is" (the `fixed` prompt style
uses the first lead-in everywhere).
"""

from programs.base import TaskSpec
from programs.registry import register_task

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
    )
)

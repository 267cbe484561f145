"""En.MultiChoice (`scbench_choice_eng`): four-option questions over a novel. Metric: the chosen
letter (leading A-D, else after "answer is" / "answer:") matches the gold option.

The prompt keeps SCBench's wording, including its "The the correct answer is" lead-in.
"""

from programs.base import TaskSpec
from programs.registry import register_task

CHOICE_ENG = register_task(
    TaskSpec(
        name="choice_eng",
        config="scbench_choice_eng",
        category="Semantic Retrieval",
        instruction="Read the book and answer the question.\n\n{context}",
        query_template=(
            "Question: {input}\nA. {options[0]}\nB. {options[1]}\nC. {options[2]}\nD. {options[3]}\n\n"
            "The the correct answer is"
        ),
        max_new_tokens=40,
    )
)

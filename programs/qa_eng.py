"""En.QA (`scbench_qa_eng`): questions over a novel. Metric: upper-cased gold contained in the
upper-cased output."""

from programs.base import TaskSpec
from programs.registry import register_task

QA_ENG = register_task(
    TaskSpec(
        name="qa_eng",
        config="scbench_qa_eng",
        category="Semantic Retrieval",
        context_template="Read the book and answer the question. Be very concise in your answer.\n\n{context}",
        question_template="Question: {question}\nAnswer:",
        max_new_tokens=40,
    )
)

"""En.QA (`scbench_qa_eng`): questions over a novel. Metric: upper-cased gold contained in the
upper-cased output (both modes). The official ground truth is the answer in a list."""

from programs.metrics.scorers import on_answer, one_answer_list
from programs.metrics.text import upper_containment
from programs.registry import register_task
from programs.spec import TaskSpec

QA_ENG = register_task(
    TaskSpec(
        name="qa_eng",
        config="scbench_qa_eng",
        category="Semantic Retrieval",
        context_template="Read the book and answer the question. Be very concise in your answer.\n\n{context}",
        question_template="Question: {question}\nAnswer:",
        max_new_tokens=40,
        scorer=on_answer(upper_containment),
        ground_truth=one_answer_list,
    )
)

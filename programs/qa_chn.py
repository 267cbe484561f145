"""Zh.QA (`scbench_qa_chn`): questions over a Chinese book. Metric: character F1 after removing
punctuation (official: over the gold string's characters, a known quirk; `fixed` mode corrects it)."""

from programs.base import TaskSpec
from programs.registry import register_task

QA_CHN = register_task(
    TaskSpec(
        name="qa_chn",
        config="scbench_qa_chn",
        category="Semantic Retrieval",
        context_template="阅读以下书籍然后回答问题。\n\n{context}",
        question_template="问题：{question}\n答案：",
        max_new_tokens=40,
    )
)

"""Zh.QA (`scbench_qa_chn`): questions over a Chinese book. Metric: character F1 after removing
punctuation (official: the best over the gold string's single characters, a known quirk; `fixed`:
against the whole normalised answer)."""

from programs.metrics.scorers import on_answer
from programs.metrics.text import zh_char_f1_fixed, zh_char_f1_official
from programs.registry import register_task
from programs.spec import TaskSpec

QA_CHN = register_task(
    TaskSpec(
        name="qa_chn",
        config="scbench_qa_chn",
        category="Semantic Retrieval",
        context_template="阅读以下书籍然后回答问题。\n\n{context}",
        question_template="问题：{question}\n答案：",
        max_new_tokens=40,
        scorer=on_answer(zh_char_f1_official),
        fixed_scorer=on_answer(zh_char_f1_fixed),
    )
)

"""Retr.KV (`scbench_kv`): find the value of a UUID key in a large JSON object.

Metric: the gold value appears in the output, case-sensitive (both scoring modes).
"""

from data.generators.kv import generate_kv
from programs.metrics.scorers import on_answer
from programs.metrics.text import substring_match
from programs.registry import register_task
from programs.spec import TaskSpec

KV = register_task(
    TaskSpec(
        name="kv",
        config="scbench_kv",
        category="String Retrieval",
        context_template="Extract the value corresponding to the specified key in the JSON object below.\n\n{context}",
        max_new_tokens=150,
        scorer=on_answer(substring_match),
        generator=generate_kv,
    )
)

"""Retr.KV (`scbench_kv`): find the value of a UUID key in a large JSON object.

Metric: the gold value appears in the output, case-sensitive.
"""

from programs.base import TaskSpec
from programs.registry import register_task

KV = register_task(
    TaskSpec(
        name="kv",
        config="scbench_kv",
        category="String Retrieval",
        context_template="Extract the value corresponding to the specified key in the JSON object below.\n\n{context}",
        max_new_tokens=150,
    )
)

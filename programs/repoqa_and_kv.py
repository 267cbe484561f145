"""Mix.RepoQA+KV (`scbench_repoqa_and_kv`): RepoQA turns and Retr.KV turns alternate over code with
UUID pairs between functions. Each turn is scored by its own sub-task's metric."""

from programs.base import TaskSpec
from programs.registry import register_task

REPOQA_AND_KV = register_task(
    TaskSpec(
        name="repoqa_and_kv",
        config="scbench_repoqa_and_kv",
        category="Multi-task",
        context_template="{context}",
        max_new_tokens={"scbench_repoqa": 1024, "scbench_kv": 80},
    )
)

"""Code.RepoQA (`scbench_repoqa`): repeat the function of a repository that a description names.
Metric: first code block -> first function (tree-sitter) -> BLEU against the needles; pass if the
best match is the gold function and BLEU >= 0.8."""

from programs.base import TaskSpec
from programs.registry import register_task

REPOQA = register_task(
    TaskSpec(
        name="repoqa",
        config="scbench_repoqa",
        category="Semantic Retrieval",
        context_template=(
            "Based on the function description and code context, please retrieve and repeat the exact "
            "described function from the code context in a code block wrapped by ```:\n\n{context}"
        ),
        max_new_tokens=1024,
    )
)

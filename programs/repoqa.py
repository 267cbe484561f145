"""Code.RepoQA (`scbench_repoqa`): repeat the function of a repository that a description names.

Metric: first code block -> first function (tree-sitter) -> BLEU against the needles; pass if the
best match is the gold function and BLEU >= 0.8. Official: the needles of every asked turn of the
run's sessions of the same repo; `fixed`: the session's own asked turns, so a session's score does
not depend on which other sessions ran. Every turn is a needle; the official prediction lines carry
`lang`, `repo` and `func_name`."""

from data.schema import HubSchema
from programs.metrics.context import every_turn
from programs.metrics.scorers import repoqa_scorer
from programs.registry import register_task
from programs.spec import TaskSpec

# The hub's RepoQA turn features besides input/answer (the dataset card's `dataset_info`).
TURN_FIELDS = (
    "name", "path", "description", "func", "start_line", "end_line", "start_byte", "end_byte",
    "global_start_line", "global_end_line", "global_start_byte", "global_end_byte", "code_ratio",
)

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
        scorer=repoqa_scorer(official=True),
        fixed_scorer=repoqa_scorer(official=False),
        repoqa_turns=every_turn,
        hub_schema=HubSchema(row_fields=("lang", "repo"), turn_fields=TURN_FIELDS),
    )
)

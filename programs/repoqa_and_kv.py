"""Mix.RepoQA+KV (`scbench_repoqa_and_kv`): RepoQA turns and Retr.KV turns alternate over code with
UUID pairs between functions. Each turn is scored by its own sub-task's metric: RepoQA pass
("scbench_repoqa" turns, the needles as in `programs.repoqa`) and substring ("scbench_kv").
Officially the KV turns score 0 in multi-request mode (`mix_kv_official`); `fixed` scores them by
substring."""

from data.generators.repoqa_and_kv import generate_repoqa_and_kv
from data.schema import HubSchema
from programs.metrics.context import SubTaskTurns
from programs.metrics.scorers import by_sub_task, mix_kv_official, on_answer, repoqa_scorer
from programs.metrics.text import substring_match
from programs.registry import register_task
from programs.spec import TaskSpec

REPOQA_AND_KV = register_task(
    TaskSpec(
        name="repoqa_and_kv",
        config="scbench_repoqa_and_kv",
        category="Multi-task",
        context_template="{context}",
        max_new_tokens={"scbench_repoqa": 1024, "scbench_kv": 80},
        scorer=by_sub_task({"scbench_repoqa": repoqa_scorer(official=True), "scbench_kv": mix_kv_official}),
        fixed_scorer=by_sub_task({"scbench_repoqa": repoqa_scorer(official=False), "scbench_kv": on_answer(substring_match)}),
        repoqa_turns=SubTaskTurns("scbench_repoqa"),
        hub_schema=HubSchema(row_fields=("lang", "repo"), turn_fields=("task", "name")),
        generator=generate_repoqa_and_kv,
    )
)

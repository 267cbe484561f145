"""What one SCBench task is: `TaskSpec`, everything a task module declares (no SGLang here).

A task is one module in `programs/` that registers one `TaskSpec`: its prompt templates, answer
budgets, category, scorers (official and fixed), what the official export writes for it, the row
layout of its hub config, and where its data comes from when no `--data` is given (an offline
generator, else a fixture file). The SGLang programs that run every task live in `programs.base`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.sample import Sample, Turn
from data.schema import HubSchema
from programs.metrics.context import ScoringContext, is_repoqa_turn
from programs.metrics.gold import turn_check
from programs.metrics.scorers import SCORING_MODES, Scorer
from programs.prompts import FIXED, MULTI_REQUEST, MULTI_TURN, OFFICIAL, turn_fields

MODES = (MULTI_TURN, MULTI_REQUEST)
HISTORIES = ("gold", "model")
# SCBench's categories, in its tables' order; a task may name another one (it is listed after these).
CATEGORIES = ("String Retrieval", "Semantic Retrieval", "Global Information", "Multi-task")

# (gold, turn extras) -> the `ground_truth` field of the turn's official prediction line.
GroundTruth = Callable[[Any, Mapping[str, Any]], Any]
# (count_tokens, *, num_samples, context_tokens, num_turns, seed) -> samples (see `data.generators`).
Generator = Callable[..., list[Sample]]

__all__ = ["CATEGORIES", "HISTORIES", "MODES", "Generator", "GroundTruth", "TaskSpec", "as_stored"]


def as_stored(gold: Any, turn_extras: Mapping[str, Any]) -> Any:
    """The gold answer as the dataset stores it (SCBench's `get_ground_truth` for most tasks)."""
    return gold


@dataclass(frozen=True)
class TaskSpec:
    """One SCBench task: its prompt templates, how long answers may be, how a turn is scored.

    Prompts. The templates are SCBench's own (scbench/eval_utils.py), by the names used there:
    `context_template` is `multiturn_templates_scdq` (instruction + `{context}`; for the tasks whose
    entry is a pair, its first element); `question_template` is
    `multiturn_follow_up_templates_in_chat_tempate` (a question as the chat follow-ups and the
    multi-request questions ask it); the first turn is `context_template` + blank line +
    `first_question_template` (default: `question_template`), which is `multiturn_templates`;
    `follow_up_template` is `multiturn_follow_up_templates` (plain-text follow-ups; default:
    `"{pre_ans}\\n\\n"` + `question_template`). `chat_answer_lead` is the text SCBench starts the
    assistant's reply with in chat follow-ups (En.Sum: "This paper").

    Budgets. `max_new_tokens` is an int, or a mapping from a turn's `task` field to an int: a Mix
    task, whose turns belong to sub-tasks.

    Scoring. `scorer` gives the official scorer's value for a turn, quirks included; `fixed_scorer`
    corrects its quirks (None: the task has none). Both come from `programs.metrics`.
    `repoqa_turns` says which turns are RepoQA needles (None: no turn is), which RepoQA scoring
    compares a model's function with.

    Official export (scbench/run_scbench.py's prediction files): `ground_truth` builds a turn's
    `ground_truth` as `get_ground_truth` does; the line's other fields follow from the declarations
    above (`official_fields`).

    Data. `hub_schema` is the row layout of `config` on the hub; `generator` makes samples offline
    (None: no generator); `fixture` is a small file of hub rows (None: `data/fixtures/<config>.jsonl`).
    """

    name: str
    config: str
    category: str
    context_template: str
    max_new_tokens: int | Mapping[str, int]
    scorer: Scorer
    fixed_scorer: Scorer | None = None
    question_template: str = "{input}"
    first_question_template: str | None = None
    follow_up_template: str | None = None
    chat_answer_lead: str = ""
    ground_truth: GroundTruth = as_stored
    repoqa_turns: Callable[[Turn], bool] | None = None
    hub_schema: HubSchema = field(default_factory=HubSchema)
    generator: Generator | None = None
    fixture: Path | None = None

    # -- prompts ---------------------------------------------------------------------------------

    def context_fields(self, sample: Sample, mode: str, style: str) -> dict[str, Any]:
        """Fields of `context_template` besides `context` (tasks override)."""
        return {}

    def question_fields(self, sample: Sample, index: int, *, chat_follow_up: bool, style: str) -> dict[str, Any]:
        """Fields of the question templates for turn `index` (tasks override)."""
        return turn_fields(sample.turns[index])

    def plain_follow_up_template(self, style: str) -> str:
        """The plain-text follow-up: SCBench's own, or the fixed style's uniform one."""
        uniform = "{pre_ans}\n\n" + self.question_template
        return (self.follow_up_template or uniform) if style == OFFICIAL else uniform

    # The prompts' plain-text parts without quirks, for scripts that rebuild prompts on their own
    # (the benchmarks): instruction + context, the blank line, a question.
    separator = "\n\n"

    def shared_prefix(self, sample: Sample) -> str:
        return self.context_template.format(context=sample.context, **self.context_fields(sample, MULTI_TURN, FIXED))

    def query(self, turn: Turn, first: bool = False) -> str:
        template = self.first_question_template if first and self.first_question_template else self.question_template
        return template.format(**self.question_fields(Sample(id="", context="", turns=(turn,)), 0, chat_follow_up=False, style=FIXED))

    # -- budgets ---------------------------------------------------------------------------------

    @property
    def sub_tasks(self) -> tuple[str, ...]:
        """A Mix task's sub-tasks (the values of its turns' `task` field); () for the others."""
        return tuple(self.max_new_tokens) if isinstance(self.max_new_tokens, Mapping) else ()

    def max_tokens(self, turn: Turn) -> int:
        if isinstance(self.max_new_tokens, Mapping):
            sub_task = turn.extras.get("task")
            if sub_task not in self.max_new_tokens:
                raise ValueError(f"{self.name}: turn has task {sub_task!r}, expected one of {list(self.max_new_tokens)}")
            return self.max_new_tokens[sub_task]
        return self.max_new_tokens

    # -- scoring ---------------------------------------------------------------------------------

    def score(self, prediction: str | None, turn: Turn, sample: Sample, mode: str = "official",
              context: ScoringContext | None = None) -> float:
        """The turn's score in [0, 1] under `mode` ("official" or "fixed"). `context`: the run's
        `programs.metrics.ScoringContext` (None: the sample is the run, in multi-turn mode)."""
        if mode not in SCORING_MODES:
            raise ValueError(f"unknown scoring mode {mode!r}; expected one of {', '.join(SCORING_MODES)}")
        scorer = self.scorer if mode == "official" else (self.fixed_scorer or self.scorer)
        prediction = "" if prediction is None else str(prediction)
        context = context if context is not None else ScoringContext.for_run(self, None, [sample])
        return float(min(1.0, max(0.0, scorer(prediction, turn, sample, context, self))))

    def check_scoreable(self, sample: Sample) -> None:
        """Raises ValueError naming the first turn that this task's scorers (official and fixed) or
        answer budgets cannot handle: a Math.Find gold that is not a number, a Mix turn of an unknown
        sub-task, a RepoQA turn without its function's name. The loader rejects such rows."""
        for index, turn in enumerate(sample.turns):
            try:
                self.max_tokens(turn)
                for scorer in dict.fromkeys(s for s in (self.scorer, self.fixed_scorer) if s is not None):
                    check = turn_check(scorer)
                    if check is not None:
                        check(turn, sample)
            except ValueError as err:
                raise ValueError(f"multi_turns[{index}]: {self.name} cannot score it: {err}") from None

    # -- official export -------------------------------------------------------------------------

    def official_ground_truth(self, gold: Any, turn_extras: Mapping[str, Any]) -> Any:
        """The turn's `ground_truth` as SCBench's `get_ground_truth` writes it."""
        return self.ground_truth(gold, turn_extras)

    def official_fields(self, turn_extras: Mapping[str, Any], sample_meta: Mapping[str, Any]) -> dict[str, Any]:
        """The fields SCBench's runner adds to a turn's prediction line after `ground_truth`: a Mix
        turn's `task` (the official scorer keeps only a file's rows of the sub-task it scores); the
        RepoQA tasks' `lang` and `repo` on every line, and `func_name` on their RepoQA turns."""
        fields: dict[str, Any] = {}
        if self.sub_tasks and "task" in turn_extras:
            fields["task"] = turn_extras["task"]
        if self.repoqa_turns is not None:
            fields["lang"] = sample_meta.get("lang")
            fields["repo"] = sample_meta.get("repo")
            turn = Turn("", None, dict(turn_extras))
            if "name" in turn_extras and is_repoqa_turn(self, turn):
                fields["func_name"] = turn_extras["name"]
        return fields

    # -- data ------------------------------------------------------------------------------------

    def fixture_file(self) -> Path:
        """The task's fixture rows: `fixture`, else the project's `data/fixtures/<config>.jsonl`."""
        from data.loader import FIXTURES_DIR

        return self.fixture if self.fixture is not None else FIXTURES_DIR / f"{self.config}.jsonl"

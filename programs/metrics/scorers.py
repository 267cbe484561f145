"""Turn scorers built from the metrics: what a task module declares as its `scorer` and
`fixed_scorer` (see `programs.spec.TaskSpec`).

A scorer takes (prediction, turn, sample, run context, task) and returns a score; `task` is the
`TaskSpec` asked (a Mix task for its sub-task turns), which says which of a sample's turns are
RepoQA needles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from data.sample import Sample, Turn
from programs.metrics.choice import choice_labels, choice_match
from programs.metrics.context import ScoringContext
from programs.metrics.gold import gold_check, turn_check, with_turn_check
from programs.metrics.repoqa import LANGUAGES, repoqa_pass
from programs.metrics.text import substring_match

if TYPE_CHECKING:
    from programs.spec import TaskSpec

SCORING_MODES = ("official", "fixed")

Scorer = Callable[[str, Turn, Sample, ScoringContext, "TaskSpec"], float]

__all__ = [
    "SCORING_MODES",
    "Scorer",
    "by_sub_task",
    "choice_ground_truth",
    "choice_scorer",
    "mix_kv_official",
    "on_answer",
    "one_answer_list",
    "repoqa_scorer",
]


def on_answer(metric: Callable[..., float], **options: Any) -> Scorer:
    """A scorer that needs only the output and the turn's gold answer: `metric(prediction, gold, **options)`."""

    def score(prediction: str, turn: Turn, sample: Sample, context: ScoringContext, task: TaskSpec) -> float:
        return metric(prediction, turn.answer, **options)

    score.__qualname__ = f"on_answer({metric.__name__}{''.join(f', {k}={v!r}' for k, v in options.items())})"
    check = gold_check(metric)
    if check is not None:
        with_turn_check(score, lambda turn, sample: check(turn.answer))
    return score


def choice_scorer(prediction: str, turn: Turn, sample: Sample, context: ScoringContext, task: TaskSpec) -> float:
    """En.MultiChoice: the chosen letter or option text against the gold option and its letter."""
    return choice_match(prediction, choice_labels(turn.answer, turn.extras.get("options")))


def repoqa_scorer(official: bool) -> Scorer:
    """RepoQA pass@1 against the needles of every asked RepoQA turn of the run's sessions of the same
    repo (official), or of the session's own asked turns (fixed)."""

    def score(prediction: str, turn: Turn, sample: Sample, context: ScoringContext, task: TaskSpec) -> float:
        check_repoqa_turn(turn, sample)
        lang = sample.metadata["lang"]
        needles = context.run_needles(task, sample) if official else context.session_needles(task, sample)
        return repoqa_pass(prediction, str(turn.extras["name"]), needles, str(lang))

    score.__qualname__ = f"repoqa_scorer(official={official})"
    return with_turn_check(score, check_repoqa_turn)


def check_repoqa_turn(turn: Turn, sample: Sample) -> None:
    """What RepoQA scoring reads besides the output: the gold function's name and a known language."""
    if "name" not in turn.extras:
        raise ValueError("a RepoQA turn needs extras['name'] (the gold function's name)")
    lang = sample.metadata.get("lang")
    if not lang:
        raise ValueError("a RepoQA sample needs metadata['lang']")
    if lang not in LANGUAGES:
        raise ValueError(f"RepoQA language {lang!r} is not supported; expected one of {', '.join(LANGUAGES)}")


def mix_kv_official(prediction: str, turn: Turn, sample: Sample, context: ScoringContext, task: TaskSpec) -> float:
    """Mix.RepoQA+KV's KV turns as the official scorer scores them: by substring in multi-turn mode,
    0 in multi-request mode, where its code hands each row dict over as the prediction and
    `label in row` looks the gold up among the row's keys."""
    if context.session_mode == "multi-request":
        return 0.0
    return substring_match(prediction, turn.answer)


def by_sub_task(routes: Mapping[str, Scorer]) -> Scorer:
    """A Mix task's scorer: each turn scored by the scorer of its sub-task (`turn.extras["task"]`)."""
    routes = dict(routes)

    def route(turn: Turn) -> Scorer:
        sub = turn.extras.get("task")
        if sub not in routes:
            raise ValueError(f"turn has extras['task']={sub!r}; expected one of {', '.join(routes)}")
        return routes[sub]

    def score(prediction: str, turn: Turn, sample: Sample, context: ScoringContext, task: TaskSpec) -> float:
        try:
            scorer = route(turn)
        except ValueError as err:
            raise ValueError(f"{task.name} {err}") from None
        return scorer(prediction, turn, sample, context, task)

    def check(turn: Turn, sample: Sample) -> None:
        sub_check = turn_check(route(turn))
        if sub_check is not None:
            sub_check(turn, sample)

    score.__qualname__ = f"by_sub_task({', '.join(routes)})"
    return with_turn_check(score, check)


# -- official ground truth: what SCBench's `get_ground_truth` (scbench/eval_utils.py) writes ------


def choice_ground_truth(gold: Any, turn_extras: Mapping[str, Any]) -> Any:
    """En.MultiChoice: `[option text, letter]`."""
    return choice_labels(gold, turn_extras.get("options"))


def one_answer_list(gold: Any, turn_extras: Mapping[str, Any]) -> Any:
    """En.QA: a list of accepted answers, which the official scorer iterates (a bare string would be
    iterated character by character); a gold already stored as a list stays that list."""
    return list(gold) if isinstance(gold, (list, tuple)) else [gold]

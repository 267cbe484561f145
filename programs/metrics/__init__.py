"""SCBench metrics for the 12 tasks, in two scoring modes.

`score_turn(task, prediction, turn, sample, mode, context)` scores one model output against one
turn's gold answer and returns a float in [0, 1]. `context` (a `ScoringContext`) is the run around
the turn: its session mode and the RepoQA needles of the run (see `programs.metrics.context`).

Modes:
- "official": exactly what the official scorer (`scbench/compute_scores.py`, `scbench/repo_qa_utils.py`
  in microsoft/MInference) gives the turn's row in the prediction file `bench.export` writes, quirks
  included, so numbers are comparable with the paper. Its per-turn and overall numbers are the means
  of these scores over the file's rows of one turn (multi-turn) or of the whole file (multi-request),
  per sub-task for the Mix tasks.
- "fixed": the same, except for these known quirks:
  * qa_chn: character F1 against the whole normalised gold answer, not the best over its single
    characters (`text.zh_char_f1_fixed` vs `text.zh_char_f1_official`);
  * many_shot: the chosen option letter must equal the gold letter, instead of "any character of
    the gold occurs in the output" (`choice.many_shot_fixed` vs `choice.many_shot_official`);
  * mf: a minus sign before the first number is read, so negative golds can be matched
    (`numeric.first_number_match(signed=True)`; the official pattern is unsigned);
  * RepoQA needles: the session's own asked RepoQA turns, so a session's score does not depend on
    which other sessions of the same repo ran; officially, every asked RepoQA turn of the run's
    sessions of the same repo (`ScoringContext.run_needles` vs `session_needles`);
  * repoqa_and_kv in multi-request mode: KV turns are scored by substring; the official scorer hands
    the KV scorer the row dicts instead of their predictions (`label in row` tests the dict's keys),
    so they score 0;
  * a gold stored as a string where a list is expected (vt) is one name, not a list of characters;
    a passkey gold stored as a number is compared through `str()` (officially never equal).
  Every other task scores the same in both modes.

Mix tasks route each turn by `turn.extras["task"]`: summary_with_needles has "scbench_summary"
(ROUGE-Lsum) and "scbench_passkey" (first integer) turns; repoqa_and_kv has "scbench_repoqa"
(RepoQA pass) and "scbench_kv" (substring) turns.
"""

from __future__ import annotations

from collections.abc import Callable

from data.sample import Sample, Turn
from programs.metrics.choice import choice_labels, choice_match, many_shot_fixed, many_shot_official
from programs.metrics.context import ScoringContext
from programs.metrics.numeric import first_int_match, first_number_match
from programs.metrics.repoqa import repoqa_pass
from programs.metrics.text import (
    names_found_fraction,
    rouge_lsum_f,
    substring_match,
    upper_containment,
    zh_char_f1_fixed,
    zh_char_f1_official,
)

SCORING_MODES = ("official", "fixed")

TASKS = (
    "kv",
    "prefix_suffix",
    "vt",
    "repoqa",
    "qa_eng",
    "qa_chn",
    "choice_eng",
    "many_shot",
    "mf",
    "summary",
    "summary_with_needles",
    "repoqa_and_kv",
)

# Sub-task of each Mix turn (`turn.extras["task"]`), per Mix task.
MIX_SUBTASKS = {
    "summary_with_needles": {"scbench_summary": "summary", "scbench_passkey": "passkey"},
    "repoqa_and_kv": {"scbench_repoqa": "repoqa", "scbench_kv": "kv"},
}

# (prediction, turn, sample, run context, task) -> score; `task` is the task asked (a Mix task for
# its sub-task turns), which says which of a sample's turns are RepoQA needles.
Scorer = Callable[[str, Turn, Sample, ScoringContext, str], float]


def _repoqa(mode: str) -> Scorer:
    def score(prediction: str, turn: Turn, sample: Sample, context: ScoringContext, task: str) -> float:
        if "name" not in turn.extras:
            raise ValueError("a RepoQA turn needs extras['name'] (the gold function's name)")
        lang = sample.metadata.get("lang")
        if not lang:
            raise ValueError("a RepoQA sample needs metadata['lang']")
        needles = context.run_needles(task, sample) if mode == "official" else context.session_needles(task, sample)
        return repoqa_pass(prediction, str(turn.extras["name"]), needles, str(lang))

    return score


def _choice(prediction: str, turn: Turn, sample: Sample, context: ScoringContext, task: str) -> float:
    return choice_match(prediction, choice_labels(turn.answer, turn.extras.get("options")))


def _on_answer(metric: Callable[..., float], **options) -> Scorer:
    """A scorer that needs only the output and the turn's gold answer."""
    return lambda p, t, s, c, task: metric(p, t.answer, **options)


def _mix_kv_official(prediction: str, turn: Turn, sample: Sample, context: ScoringContext, task: str) -> float:
    # In multi-request mode the official code passes each row dict as the prediction: `label in row`
    # looks the gold up among the row's keys, never true for a KV value.
    if context.session_mode == "multi-request":
        return 0.0
    return substring_match(prediction, turn.answer)


_COMMON: dict[str, Scorer] = {
    "kv": _on_answer(substring_match),
    "prefix_suffix": _on_answer(substring_match),
    "qa_eng": _on_answer(upper_containment),
    "choice_eng": _choice,
    "summary": _on_answer(rouge_lsum_f),
}

_BY_MODE: dict[str, dict[str, Scorer]] = {
    "official": {
        **_COMMON,
        "vt": _on_answer(names_found_fraction, per_character=True),
        "repoqa": _repoqa("official"),
        "qa_chn": _on_answer(zh_char_f1_official),
        "many_shot": _on_answer(many_shot_official),
        "mf": _on_answer(first_number_match),
        "passkey": _on_answer(first_int_match),
        "mix_kv": _mix_kv_official,
    },
    "fixed": {
        **_COMMON,
        "vt": _on_answer(names_found_fraction),
        "repoqa": _repoqa("fixed"),
        "qa_chn": _on_answer(zh_char_f1_fixed),
        "many_shot": _on_answer(many_shot_fixed),
        "mf": _on_answer(first_number_match, signed=True),
        "passkey": _on_answer(first_int_match, coerce=True),
        "mix_kv": _on_answer(substring_match),
    },
}


def _mix_subtask(task: str, turn: Turn) -> str:
    routes = MIX_SUBTASKS[task]
    sub = turn.extras.get("task")
    if sub not in routes:
        raise ValueError(f"{task} turn has extras['task']={sub!r}; expected one of {', '.join(routes)}")
    # The KV turns of Mix.RepoQA+KV have their own official quirk (multi-request mode).
    return "mix_kv" if (task, routes[sub]) == ("repoqa_and_kv", "kv") else routes[sub]


def score_turn(
    task: str,
    prediction: str,
    turn: Turn,
    sample: Sample,
    mode: str = "official",
    context: ScoringContext | None = None,
) -> float:
    """Score one model output for one turn of an SCBench session; a float in [0, 1].

    `task` is one of `TASKS`, `mode` one of `SCORING_MODES` (else ValueError naming the valid ones).
    `context` is the run the turn belongs to (`ScoringContext.for_run`); without one, the sample is
    taken as a run of its own, every turn asked, in multi-turn mode. Mix tasks score each turn with
    its sub-task's metric (see the module docstring).
    """
    if task not in TASKS:
        raise ValueError(f"unknown SCBench task {task!r}; expected one of {', '.join(TASKS)}")
    if mode not in SCORING_MODES:
        raise ValueError(f"unknown scoring mode {mode!r}; expected one of {', '.join(SCORING_MODES)}")
    prediction = "" if prediction is None else str(prediction)
    context = context if context is not None else ScoringContext.for_run(task, None, [sample])
    metric = _mix_subtask(task, turn) if task in MIX_SUBTASKS else task
    score = _BY_MODE[mode][metric](prediction, turn, sample, context, task)
    return float(min(1.0, max(0.0, score)))


__all__ = ["MIX_SUBTASKS", "SCORING_MODES", "TASKS", "ScoringContext", "score_turn"]

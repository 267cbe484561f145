"""SCBench metrics for the 12 tasks, in two scoring modes.

`score_turn(task, prediction, turn, sample, mode)` scores one model output against one turn's gold
answer and returns a float in [0, 1].

Modes:
- "official": what the official scorer (`scbench/compute_scores.py`, `scbench/repo_qa_utils.py` in
  microsoft/MInference, run as `run_scbench.py` calls it) computes, quirks included, so numbers are
  comparable with the paper.
- "fixed": the same, except for three known quirks:
  * qa_chn: character F1 against the whole normalised gold answer, not the best over its single
    characters (`text.zh_char_f1_fixed` vs `text.zh_char_f1_official`);
  * many_shot: the chosen option letter must equal the gold letter, instead of "any character of
    the gold occurs in the output" (`choice.many_shot_fixed` vs `choice.many_shot_official`);
  * mf: a minus sign before the first number is read, so negative golds can be matched
    (`numeric.first_number_match(signed=True)`; the official pattern is unsigned).
  Every other task scores the same in both modes.

Mix tasks route each turn by `turn.extras["task"]`: summary_with_needles has "scbench_summary"
(ROUGE-Lsum) and "scbench_passkey" (first integer) turns; repoqa_and_kv has "scbench_repoqa"
(RepoQA pass, needles = the sample's RepoQA turns) and "scbench_kv" (substring) turns.
"""

from __future__ import annotations

from collections.abc import Callable

from data.sample import Sample, Turn
from programs.metrics.choice import choice_labels, choice_match, many_shot_fixed, many_shot_official
from programs.metrics.numeric import first_int_match, first_number_match
from programs.metrics.repoqa import needles_from_turns, repoqa_pass
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

Scorer = Callable[[str, Turn, Sample], float]


def _repoqa(prediction: str, turn: Turn, sample: Sample, only_task: str | None = None) -> float:
    if "name" not in turn.extras:
        raise ValueError("a RepoQA turn needs extras['name'] (the gold function's name)")
    lang = sample.metadata.get("lang")
    if not lang:
        raise ValueError("a RepoQA sample needs metadata['lang']")
    needles = needles_from_turns(sample.turns, only_task=only_task)
    return repoqa_pass(prediction, str(turn.extras["name"]), needles, str(lang))


def _choice(prediction: str, turn: Turn, sample: Sample) -> float:
    return choice_match(prediction, choice_labels(turn.answer, turn.extras.get("options")))


_COMMON: dict[str, Scorer] = {
    "kv": lambda p, t, s: substring_match(p, t.answer),
    "prefix_suffix": lambda p, t, s: substring_match(p, t.answer),
    "vt": lambda p, t, s: names_found_fraction(p, t.answer),
    "repoqa": _repoqa,
    "qa_eng": lambda p, t, s: upper_containment(p, t.answer),
    "choice_eng": _choice,
    "summary": lambda p, t, s: rouge_lsum_f(p, t.answer),
    "passkey": lambda p, t, s: first_int_match(p, t.answer),
}

_BY_MODE: dict[str, dict[str, Scorer]] = {
    "official": {
        **_COMMON,
        "qa_chn": lambda p, t, s: zh_char_f1_official(p, t.answer),
        "many_shot": lambda p, t, s: many_shot_official(p, t.answer),
        "mf": lambda p, t, s: first_number_match(p, t.answer),
    },
    "fixed": {
        **_COMMON,
        "qa_chn": lambda p, t, s: zh_char_f1_fixed(p, t.answer),
        "many_shot": lambda p, t, s: many_shot_fixed(p, t.answer),
        "mf": lambda p, t, s: first_number_match(p, t.answer, signed=True),
    },
}


def _mix_subtask(task: str, turn: Turn) -> str:
    routes = MIX_SUBTASKS[task]
    sub = turn.extras.get("task")
    if sub not in routes:
        raise ValueError(f"{task} turn has extras['task']={sub!r}; expected one of {', '.join(routes)}")
    return routes[sub]


def score_turn(task: str, prediction: str, turn: Turn, sample: Sample, mode: str = "official") -> float:
    """Score one model output for one turn of an SCBench session; a float in [0, 1].

    `task` is one of `TASKS`, `mode` one of `SCORING_MODES` (else ValueError naming the valid ones).
    Mix tasks score each turn with its sub-task's metric (see the module docstring).
    """
    if task not in TASKS:
        raise ValueError(f"unknown SCBench task {task!r}; expected one of {', '.join(TASKS)}")
    if mode not in SCORING_MODES:
        raise ValueError(f"unknown scoring mode {mode!r}; expected one of {', '.join(SCORING_MODES)}")
    prediction = "" if prediction is None else str(prediction)
    if task in MIX_SUBTASKS:
        sub = _mix_subtask(task, turn)
        if sub == "repoqa":
            score = _repoqa(prediction, turn, sample, only_task="scbench_repoqa")
        else:
            score = _BY_MODE[mode][sub](prediction, turn, sample)
    else:
        score = _BY_MODE[mode][task](prediction, turn, sample)
    return float(min(1.0, max(0.0, score)))


__all__ = ["MIX_SUBTASKS", "SCORING_MODES", "TASKS", "score_turn"]

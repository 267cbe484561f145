"""SCBench metrics, a library: the task modules build their scorers from it.

Each task module (`programs/<task>.py`) declares its `scorer` (official) and `fixed_scorer`
(`programs.spec.TaskSpec`) from these pieces:

- `text`, `numeric`, `choice`, `repoqa`: one function per metric, `metric(prediction, gold, ...)`;
- `scorers`: scorers made of them (`on_answer`, `choice_scorer`, `repoqa_scorer`, `by_sub_task`
  for the Mix tasks, `mix_kv_official`) and the official ground-truth builders;
- `context`: the run around a turn (`ScoringContext`: its session mode and the RepoQA needles).

Modes:
- "official": exactly what the official scorer (`scbench/compute_scores.py`, `scbench/repo_qa_utils.py`
  in microsoft/MInference) gives the turn's row in the prediction file the official export writes,
  quirks included, so numbers are comparable with the paper.
- "fixed": the same with the known quirks corrected; each task module's docstring says which (Zh.QA
  F1 over the whole answer, ICL.ManyShot letter match, Math.Find's minus sign, RepoQA's own needles,
  Mix.RepoQA+KV's multi-request KV turns, a vt gold stored as a string, a passkey stored as a number).

`score_turn(task, prediction, turn, sample, mode, context)` scores one turn by task name.
"""

from __future__ import annotations

from data.sample import Sample, Turn
from programs.metrics.context import ScoringContext
from programs.metrics.scorers import SCORING_MODES, Scorer


def score_turn(
    task: str,
    prediction: str,
    turn: Turn,
    sample: Sample,
    mode: str = "official",
    context: ScoringContext | None = None,
) -> float:
    """Score one model output for one turn of a session of the task named `task`; a float in [0, 1].

    Unknown tasks or modes are a ValueError naming the valid ones. `context` is the run the turn
    belongs to (`ScoringContext.for_run`); without one, the sample is a run of its own, every turn
    asked, in multi-turn mode. See `programs.spec.TaskSpec.score`.
    """
    from errors import UsageError
    from programs.registry import get_task

    try:
        spec = get_task(task)
    except UsageError as err:
        raise ValueError(str(err)) from None
    return spec.score(prediction, turn, sample, mode, context)


__all__ = ["SCORING_MODES", "Scorer", "ScoringContext", "score_turn"]

"""What scoring one turn needs from the rest of its run: the session mode and the RepoQA needles.

The official scorer (`scbench/compute_scores.py`) scores a whole prediction file, one per task and
mode, and two of its results depend on more than the turn itself:

- RepoQA (and the RepoQA turns of Mix.RepoQA+KV) compares the model's function with the needles of
  every row of the file for the same repo: each asked RepoQA turn of every session of the run, in
  the file's row order (session, then turn), turns cut by `--max-turns` left out.
- Mix.RepoQA+KV in multi-request mode hands whole row dicts to the KV scorer, so its KV turns score 0.

A `ScoringContext` carries that, built once per (task, mode) of a run from its sessions, so each
turn can be scored as soon as its session ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from data.sample import Sample, Turn

if TYPE_CHECKING:
    from programs.spec import TaskSpec

Needle = tuple[str, str]  # (function name, function source)
# A task, or its name (looked up in `programs.registry`).
TaskRef = Union[str, "TaskSpec"]


def every_turn(turn: Turn) -> bool:
    """Every turn of a RepoQA sample is a needle."""
    return True


@dataclass(frozen=True)
class SubTaskTurns:
    """The turns of one sub-task of a Mix task (`turn.extras["task"] == sub_task`)."""

    sub_task: str

    def __call__(self, turn: Turn) -> bool:
        return turn.extras.get("task") == self.sub_task


def _spec(task: TaskRef) -> TaskSpec:
    if isinstance(task, str):
        from programs.registry import get_task

        return get_task(task)
    return task


def is_repoqa_turn(task: TaskRef, turn: Turn) -> bool:
    """Whether `turn` is a RepoQA turn of `task` (its `repoqa_turns` says so)."""
    chooses: Callable[[Turn], bool] | None = _spec(task).repoqa_turns
    return chooses is not None and chooses(turn)


def repoqa_needles(task: TaskRef, turns: Iterable[Turn]) -> list[Needle]:
    """(name, source) of the RepoQA turns among `turns`, in order; turns without a name are not
    needles (scoring such a turn is an error of its own)."""
    spec = _spec(task)
    return [
        (str(turn.extras["name"]), str(turn.answer))
        for turn in turns
        if is_repoqa_turn(spec, turn) and "name" in turn.extras
    ]


@dataclass(frozen=True)
class ScoringContext:
    """The run around a turn, as the official scorer sees it.

    `session_mode`: "multi-turn" or "multi-request" (None: unknown, scored as multi-turn).
    `repo_needles`: repo (the sample's `metadata["repo"]`) -> needles of every asked RepoQA turn of
    the run's sessions of that repo, in the official file's row order; used by official scoring.
    `asked_turns`: sample id -> how many of its turns its session asked (absent: all); fixed scoring
    compares with the session's own asked needles only.
    """

    session_mode: str | None = None
    repo_needles: Mapping[Any, tuple[Needle, ...]] = field(default_factory=dict)
    asked_turns: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def for_sessions(cls, task: TaskRef, session_mode: str | None, sessions: Iterable[tuple[Sample, int]]) -> ScoringContext:
        """`sessions`: (sample, number of turns asked) in the official file's order (session index)."""
        spec = _spec(task)
        needles: dict[Any, list[Needle]] = {}
        asked: dict[str, int] = {}
        for sample, count in sessions:
            asked[sample.id] = count
            found = repoqa_needles(spec, sample.turns[:count])
            if found:
                needles.setdefault(sample.metadata.get("repo"), []).extend(found)
        return cls(session_mode, {repo: tuple(n) for repo, n in needles.items()}, asked)

    @classmethod
    def for_run(cls, task: TaskRef, session_mode: str | None, samples: Sequence[Sample], max_turns: int | None = None) -> ScoringContext:
        """A run that asks the first `max_turns` turns (None: all) of every sample, in this order."""
        return cls.for_sessions(task, session_mode, ((s, len(s.turns[:max_turns])) for s in samples))

    def session_needles(self, task: TaskRef, sample: Sample) -> list[Needle]:
        """The needles of the sample's own asked RepoQA turns (fixed scoring)."""
        return repoqa_needles(task, sample.turns[: self.asked_turns.get(sample.id)])

    def run_needles(self, task: TaskRef, sample: Sample) -> list[Needle]:
        """Every asked needle of the run for the sample's repo (official scoring); a sample whose repo
        the context does not know is a run of its own."""
        repo = sample.metadata.get("repo")
        if repo in self.repo_needles:
            return list(self.repo_needles[repo])
        return self.session_needles(task, sample)

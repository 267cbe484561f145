"""What a scorer can score: each metric and scorer may declare a check of the gold answer (and the
turn fields) it reads, so that a row it could not score is rejected when the data is loaded, with
the other malformed rows, instead of ending a run at the row's first score.

A metric declares `@accepts_gold(check)`, where `check(gold)` raises ValueError for a gold it cannot
read; a scorer built from it (`scorers.on_answer`) passes the check on. A scorer declares
`with_turn_check(scorer, check)`, where `check(turn, sample)` raises ValueError. Metrics and
scorers that read any gold (through `str()`) declare nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from data.sample import Sample, Turn

GoldCheck = Callable[[Any], object]
TurnCheck = Callable[[Turn, Sample], object]
F = TypeVar("F", bound=Callable[..., Any])

_GOLD_CHECK = "gold_check"
_TURN_CHECK = "turn_check"

__all__ = ["GoldCheck", "TurnCheck", "accepts_gold", "gold_check", "turn_check", "with_turn_check"]


def accepts_gold(check: GoldCheck) -> Callable[[F], F]:
    """Marks a metric `metric(prediction, gold, ...)` whose `check(gold)` raises ValueError for a
    gold the metric cannot score."""

    def mark(metric: F) -> F:
        setattr(metric, _GOLD_CHECK, check)
        return metric

    return mark


def gold_check(metric: Callable[..., Any]) -> GoldCheck | None:
    return getattr(metric, _GOLD_CHECK, None)


def with_turn_check(scorer: F, check: TurnCheck) -> F:
    """`scorer`, declaring that `check(turn, sample)` raises ValueError for a turn it cannot score."""
    setattr(scorer, _TURN_CHECK, check)
    return scorer


def turn_check(scorer: Callable[..., Any]) -> TurnCheck | None:
    return getattr(scorer, _TURN_CHECK, None)

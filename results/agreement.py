"""`agree_full`: how far a method's answers moved from full attention's, turn by turn.

A method that keeps the information full attention uses gives full attention's answer, right or
wrong; so where every score is near zero (a small model), agreement still shows which method changed
what the model says. For each record of a point that has a counterpart in the sweep's full-attention
point (same task, mode, session and turn), two values:

- exact: 1.0 when the two predictions are equal after trimming and collapsing whitespace;
- f1: the F1 of the two predictions' bags of word tokens (lowercased runs of letters and digits, so
  a UUID's five groups are five tokens and two UUIDs that share groups agree in part), 1.0 when
  both have none.

The reference is the point labelled "full", else the one point of method `full` (with several and
none labelled "full", there is no reference). The reference's own records get no agreement.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from results.identity import PointIdentity
from results.records import TurnRecord

REFERENCE_METHOD = "full"
WORD = re.compile(r"\w+")

__all__ = ["Agreement", "agree", "agreements", "reference_point"]


@dataclass(frozen=True)
class Agreement:
    exact: float
    f1: float


def agree(prediction: str, reference: str) -> Agreement:
    a, b = WORD.findall(prediction.lower()), WORD.findall(reference.lower())
    exact = float(" ".join(prediction.split()) == " ".join(reference.split()))
    if not a or not b:
        return Agreement(exact, float(not a and not b))
    common = sum((Counter(a) & Counter(b)).values())
    f1 = 0.0 if common == 0 else 2 * common / (len(a) + len(b))
    return Agreement(exact, f1)


def reference_point(points: Sequence[PointIdentity]) -> PointIdentity | None:
    """The full-attention point the others are compared with, if the records have one."""
    full = list(dict.fromkeys(p for p in points if p.method == REFERENCE_METHOD))
    labelled = [p for p in full if p.label == REFERENCE_METHOD]
    if len(labelled) == 1:
        return labelled[0]
    return full[0] if len(full) == 1 else None


def _turn_key(record: TurnRecord) -> tuple:
    return record.task, record.mode, record.sample_index, record.sample_id, record.turn


def agreements(records: Sequence[TurnRecord], points: Sequence[PointIdentity] | None = None) -> list[Agreement | None]:
    """Per record (in order), its agreement with the reference point's prediction for the same turn;
    None for failed records, the reference's own, and turns the reference did not answer.
    `points`: the records' identities, when the caller has them already."""
    points = [PointIdentity.of(r) for r in records] if points is None else points
    reference = reference_point(points)
    if reference is None:
        return [None] * len(records)
    answers = {_turn_key(r): r.prediction for r, p in zip(records, points)
               if p == reference and not r.failed and r.prediction is not None}
    out: list[Agreement | None] = []
    for record, point in zip(records, points):
        answer = answers.get(_turn_key(record))
        usable = point != reference and not record.failed and record.prediction is not None and answer is not None
        out.append(agree(record.prediction, answer) if usable else None)
    return out

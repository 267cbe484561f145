"""Number metrics: Math.Find (first number) and the passkey turns of Mix.Sum+NIAH (first integer)."""

from __future__ import annotations

import re
from typing import Any

from programs.metrics.gold import accepts_gold

# Official Math.Find pattern: an unsigned decimal or an unsigned integer (no sign, no exponent).
_FIRST_NUMBER = re.compile(r"\d+\.\d+|\d+")
# Fixed mode: the same, with an optional minus sign (ASCII hyphen-minus or U+2212) right before it.
_FIRST_SIGNED_NUMBER = re.compile(r"[-\u2212]?(?:\d+\.\d+|\d+)")
_DIGIT_RUN = re.compile(r"[0-9]+")


def _single(gold: Any) -> Any:
    """The official scorers unwrap a one-element list gold."""
    if isinstance(gold, (list, tuple)):
        if not gold:
            raise ValueError("empty gold answer list")
        return gold[0]
    return gold


def _numeric_gold(gold: Any) -> int | float:
    value = _single(gold)
    if isinstance(value, bool):
        raise ValueError(f"Math.Find gold must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"Math.Find gold must be a number, got {value!r}") from None


@accepts_gold(_numeric_gold)
def first_number_match(prediction: str, gold: Any, signed: bool = False) -> float:
    """Math.Find, as the official `get_score_one_math_find`: take the first `\\d+\\.\\d+|\\d+` in the
    output; for an integer gold it scores 1.0 iff `int(float(number)) == gold`, for a float gold iff
    `float(number) == gold`. A numeric string gold is read as int (else float).

    Official quirks: the number is read unsigned, so a negative gold can never be matched ("-5" is
    read as 5, and a wrong "-5" matches gold 5); a decimal is truncated toward zero for an integer
    gold ("41.9" matches 41); only the first number counts ("1 more than 41 is 42" is read as 1).
    With `signed=True` (fixed mode) a minus sign directly before the number is read too ("-5" is
    -5); the other two behaviours are kept.
    """
    target = _numeric_gold(gold)
    match = (_FIRST_SIGNED_NUMBER if signed else _FIRST_NUMBER).search(prediction)
    if match is None:
        return 0.0
    found = match.group(0).replace("\u2212", "-")
    if isinstance(target, int):
        return 1.0 if int(float(found)) == target else 0.0
    return 1.0 if float(found) == target else 0.0


@accepts_gold(_single)
def first_int_match(prediction: str, gold: Any, coerce: bool = False) -> float:
    """Passkey turns of Mix.Sum+NIAH, as the official `get_score_one_passkey`: the first maximal run
    of ASCII digits in the output, compared as a string with the gold (e.g. "key 0042-7" -> "0042").
    Leading zeros are significant.

    Officially the digit run is compared with the gold *as stored* (a one-element list unwrapped):
    the dataset stores a string; a gold stored as a number never equals the string, so it scores 0.
    With `coerce=True` (fixed mode) the gold goes through `str()` and `strip()` first, so a numeric
    gold can be matched.
    """
    match = _DIGIT_RUN.search(prediction)
    found = match.group(0) if match else ""
    target = _single(gold)
    if coerce:
        target = str(target).strip()
    return 1.0 if found == target else 0.0

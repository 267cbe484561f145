"""Sizing a generated context to a token budget."""

from __future__ import annotations

from collections.abc import Callable


def largest_fitting(build: Callable[[int], str], count_tokens: Callable[[str], int], budget: int, upper: int) -> int:
    """The largest n in [1, upper] with count_tokens(build(n)) <= budget (1 if none fits).

    Token counts grow monotonically with n for every context we build, so a binary search needs
    about log2(upper) tokenizations.
    """
    lo, hi = 1, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(build(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo

"""Sizing a generated context to a token budget."""

from __future__ import annotations

from collections.abc import Callable


def largest_fitting(build: Callable[[int], str], count_tokens: Callable[[str], int], budget: int, start: int = 16) -> int:
    """The largest n >= 1 with count_tokens(build(n)) <= budget (1 if none fits).

    `build(n)` must accept any n (generators extend their pool lazily). Token counts grow
    monotonically with n for every context we build: the upper bound doubles until it overflows,
    then a binary search needs about log2(n) more tokenizations.
    """
    lo, hi = 1, max(2, start)
    while count_tokens(build(hi)) <= budget:
        lo, hi = hi, hi * 2
    hi -= 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(build(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo

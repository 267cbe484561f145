"""Sizing a generated context to a token budget."""

from __future__ import annotations

from collections.abc import Callable


def check_sizes(num_samples: int, num_turns: int) -> None:
    if num_samples < 1 or num_turns < 1:
        raise ValueError("num_samples and num_turns must be at least 1")


def largest_fitting(
    build: Callable[[int], str],
    count_tokens: Callable[[str], int],
    budget: int,
    start: int = 16,
    upper: int | None = None,
) -> int:
    """The largest n >= 1 (and <= upper, if given) with count_tokens(build(n)) <= budget (1 if none fits).

    Without `upper`, `build(n)` must accept any n (generators extend their pool lazily): the upper
    bound doubles until it overflows. Token counts grow monotonically with n for every context we
    build, so a binary search then needs about log2(n) more tokenizations.
    """
    if upper is not None:
        lo, hi = 1, upper
    else:
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

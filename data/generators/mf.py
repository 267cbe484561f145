"""Math.Find: an array of integers; each turn asks a different statistic of it.

The array mixes negative and positive numbers of up to NUM_DIGITS digits (each session draws its
own lower and upper bound, so the extremes are not guessable) and has an odd length, so the median
is an element. The context is the array printed as a Python list (the hub stores the list
itself; `sample_from_row` prints it the same way). Each input matches SCBench's `The .+ is` pattern,
from which the prompt's "What is ...?" line is derived.

Note: the official scorer reads the first run of digits in the output and drops any minus sign, so a
negative gold can never match under it; a sign-aware scorer does not have that problem.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

from data.generators.sizing import check_sizes, largest_fitting
from data.sample import Sample, Turn

NUM_DIGITS = 4
MIN_LEN = 5


def _second(values: list[int], reverse: bool) -> int:
    """The second largest (or smallest) distinct value; the only value if all are equal."""
    distinct = sorted(set(values), reverse=reverse)
    return distinct[1] if len(distinct) > 1 else distinct[0]


# name -> (input, statistic over the array)
STATISTICS: dict[str, tuple[str, Callable[[list[int]], int]]] = {
    "largest": ("The largest number of the list is: ", max),
    "smallest": ("The smallest number of the list is: ", min),
    "median": ("The median of the list is: ", lambda v: int(statistics.median(v))),
    "second_largest": ("The second largest distinct number of the list is: ", lambda v: _second(v, True)),
    "second_smallest": ("The second smallest distinct number of the list is: ", lambda v: _second(v, False)),
    "range": ("The difference between the largest and the smallest number of the list is: ", lambda v: max(v) - min(v)),
    "negatives": ("The count of negative numbers in the list is: ", lambda v: sum(1 for x in v if x < 0)),
}


def mf_context(values: list[int]) -> str:
    return str(values)


def statistic(name: str, values: list[int]) -> int:
    return int(STATISTICS[name][1](values))


def generate_mf(
    count_tokens: Callable[[str], int],
    *,
    num_samples: int,
    context_tokens: int,
    num_turns: int,
    seed: int,
) -> list[Sample]:
    check_sizes(num_samples, num_turns)
    rng = random.Random(seed)
    samples = []
    for index in range(num_samples):
        # Draw numbers lazily while sizing, then keep the longest odd-length prefix that fits.
        low = -rng.randint(10 ** (NUM_DIGITS - 1), 10**NUM_DIGITS - 1)
        high = rng.randint(10 ** (NUM_DIGITS - 1), 10**NUM_DIGITS - 1)
        pool: list[int] = []

        def build(k: int) -> str:
            while len(pool) < k:
                pool.append(rng.randint(low, high))
            return mf_context(pool[:k])

        n = largest_fitting(build, count_tokens, context_tokens, start=max(16, context_tokens // 4))
        if n % 2 == 0:
            n -= 1
        if n < MIN_LEN or count_tokens(build(n)) > context_tokens:
            raise ValueError(f"context_tokens={context_tokens} fits fewer than {MIN_LEN} numbers")
        values = pool[:n]
        # Every session sees the statistics in its own order; more turns than statistics cycle.
        order = list(STATISTICS)
        rng.shuffle(order)
        names = [order[t % len(order)] for t in range(num_turns)]
        turns = tuple(
            Turn(question=STATISTICS[name][0], answer=statistic(name, values), extras={"statistic": name})
            for name in names
        )
        samples.append(
            Sample(
                id=f"mf-{seed}-{index}",
                context=mf_context(values),
                turns=turns,
                metadata={"num_values": n, "seed": seed, "synthetic": True},
            )
        )
    return samples

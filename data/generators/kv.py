"""Retr.KV: a JSON object of random UUID key/value pairs; each turn asks one key's value.

Keys are asked at depths spread evenly over the object (turn i of n at depth (i + 0.5) / n), so a
session probes the start, middle and end of the context.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable

from data.generators.sizing import check_sizes, largest_fitting
from data.sample import Sample, Turn

QUESTION = 'Key: "{key}"\nThe value associated with the specified key is: '


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID string drawn from `rng` (seeded, unlike `uuid.uuid4`)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def kv_context(pairs: list[tuple[str, str]]) -> str:
    return "JSON data:\n" + json.dumps(dict(pairs), ensure_ascii=False)


def generate_kv(
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
        # Draw pairs lazily while sizing, then keep the longest prefix that fits the budget.
        pool: list[tuple[str, str]] = []

        def build(k: int) -> str:
            while len(pool) < k:
                pool.append((random_uuid(rng), random_uuid(rng)))
            return kv_context(pool[:k])

        n = largest_fitting(build, count_tokens, context_tokens, start=max(16, context_tokens // 40))
        if n < num_turns:
            raise ValueError(f"context_tokens={context_tokens} fits only {n} pairs; need at least {num_turns}")
        pairs = pool[:n]
        depths = [int((i + 0.5) / num_turns * n) for i in range(num_turns)]
        turns = tuple(
            Turn(question=QUESTION.format(key=pairs[d][0]), answer=pairs[d][1], extras={"depth": round(d / n, 3)})
            for d in depths
        )
        samples.append(
            Sample(
                id=f"kv-{seed}-{index}",
                context=kv_context(pairs),
                turns=turns,
                metadata={"num_pairs": n, "seed": seed, "synthetic": True},
            )
        )
    return samples

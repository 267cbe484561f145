"""Retr.Prefix-Suffix: a list of random strings; each turn asks for the one string with a given prefix and suffix.

Every string is 65..122 characters of letters and digits. Each turn's target is identified by its
first and last `AFFIX_LEN` characters; the list also holds, per turn, one decoy that shares only the
prefix and one that shares only the suffix, so matching one end is not enough. Targets sit at depths
spread evenly over the list (turn i of n at depth (i + 0.5) / n); decoys at random other places.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from data.generators.sizing import check_sizes, largest_fitting
from data.sample import Sample, Turn

ALPHABET = string.ascii_letters + string.digits
MIN_LEN, MAX_LEN = 65, 122
AFFIX_LEN = 5
HEADER = (
    "Below is a list of random strings, one per line. Memorize them: you will be asked to find strings "
    "by how they begin and end.\n\n"
)
QUESTION = (
    'Find the string in the list above that starts with "{prefix}" and ends with "{suffix}". '
    "Reply with the complete string only.\nThe string is: "
)


def _random_string(rng: random.Random, prefix: str = "", suffix: str = "") -> str:
    length = rng.randint(MIN_LEN, MAX_LEN)
    middle = "".join(rng.choices(ALPHABET, k=length - len(prefix) - len(suffix)))
    return prefix + middle + suffix


def prefix_suffix_context(strings: list[str]) -> str:
    return HEADER + "\n".join(strings)


def matches(strings: list[str], prefix: str, suffix: str) -> list[int]:
    """Indices of the strings that start with `prefix` and end with `suffix`."""
    return [i for i, s in enumerate(strings) if s.startswith(prefix) and s.endswith(suffix)]


def _decoy(rng: random.Random, *, prefix: str = "", suffix: str = "", avoid_prefix: str = "", avoid_suffix: str = "") -> str:
    while True:
        s = _random_string(rng, prefix, suffix)
        if avoid_prefix and s.startswith(avoid_prefix):
            continue
        if avoid_suffix and s.endswith(avoid_suffix):
            continue
        return s


def _place(rng: random.Random, pool: list[str], n: int, num_turns: int) -> tuple[list[str], list[int], list[dict]]:
    """The first n pool strings with targets at spread depths and two decoys per target.

    Returns the strings, the target indices and the per-turn decoy positions. Draws from `rng`.
    """
    strings = list(pool[:n])
    targets = [int((i + 0.5) / num_turns * n) for i in range(num_turns)]
    taken = set(targets)
    free = [i for i in range(n) if i not in taken]
    rng.shuffle(free)
    decoys = []
    for t, idx in enumerate(targets):
        target = strings[idx]
        p, s = target[:AFFIX_LEN], target[-AFFIX_LEN:]
        pi, si = free[2 * t], free[2 * t + 1]
        strings[pi] = _decoy(rng, prefix=p, avoid_suffix=s)
        strings[si] = _decoy(rng, suffix=s, avoid_prefix=p)
        decoys.append({"prefix_decoy": pi, "suffix_decoy": si})
    # A random string matching another turn's prefix+suffix is astronomically unlikely; redraw if so.
    reserved = set(targets) | {d for pair in decoys for d in pair.values()}
    for idx in targets:
        p, s = strings[idx][:AFFIX_LEN], strings[idx][-AFFIX_LEN:]
        for j in matches(strings, p, s):
            if j != idx:
                if j in reserved:
                    raise ValueError("two targets share a prefix and suffix; try another seed")
                strings[j] = _decoy(rng, avoid_prefix=p, avoid_suffix=s)
    return strings, targets, decoys


def generate_prefix_suffix(
    count_tokens: Callable[[str], int],
    *,
    num_samples: int,
    context_tokens: int,
    num_turns: int,
    seed: int,
) -> list[Sample]:
    check_sizes(num_samples, num_turns)
    rng = random.Random(seed)
    need = 3 * num_turns  # one target and two decoys per turn
    samples = []
    for index in range(num_samples):
        # Draw strings lazily while sizing, then keep the longest prefix that fits the budget.
        pool: list[str] = []

        def build(k: int) -> str:
            while len(pool) < k:
                pool.append(_random_string(rng))
            return prefix_suffix_context(pool[:k])

        n = largest_fitting(build, count_tokens, context_tokens, start=max(16, context_tokens // 60))
        while True:
            if n < need:
                raise ValueError(
                    f"context_tokens={context_tokens} fits only {n} strings; need at least {need} for {num_turns} turns"
                )
            # Decoys replace pool strings, which can change the token count a little: shrink until it fits.
            strings, targets, decoys = _place(rng, pool, n, num_turns)
            context = prefix_suffix_context(strings)
            if count_tokens(context) <= context_tokens:
                break
            n -= max(1, n // 100)
        turns = tuple(
            Turn(
                question=QUESTION.format(prefix=strings[idx][:AFFIX_LEN], suffix=strings[idx][-AFFIX_LEN:]),
                answer=strings[idx],
                extras={"depth": round(idx / n, 3)},
            )
            for idx in targets
        )
        samples.append(
            Sample(
                id=f"prefix_suffix-{seed}-{index}",
                context=context,
                turns=turns,
                metadata={"num_strings": n, "seed": seed, "synthetic": True},
            )
        )
    return samples

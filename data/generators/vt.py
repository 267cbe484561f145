"""Retr.MultiHop: RULER-style variable tracking hidden in repeated noise.

Each turn owns a group of `CHAINS_PER_TURN` chains of `HOPS` hops: `VAR ABCDE = 12345`, then
`VAR FGHIJ = VAR ABCDE`, `VAR KLMNO = VAR FGHIJ`. The turn asks for the variables holding its first
chain's value; the group's other chain (a different value) is the decoy. Gold = the chain's names in
assignment order. Statements sit at random depths in the noise, each chain in order.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from data.generators.sizing import check_sizes, largest_fitting
from data.sample import Sample, Turn

HOPS = 2
CHAINS_PER_TURN = 2
NAME_LEN = 5
HEADER = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
NOISE = "The tide comes in. The gulls circle the pier. The old boat is painted red. Evening falls. Then morning again."
QUESTION = (
    "Question: Find all variables that are assigned the value {value} in the text above. "
    "Answer: According to the chain(s) of variable assignment in the text above, {count} variables are "
    "assigned the value {value}, they are: "
)


def _chain_statements(names: list[str], value: int) -> list[str]:
    return [f"VAR {names[0]} = {value}"] + [f"VAR {names[i]} = VAR {names[i - 1]}" for i in range(1, len(names))]


def vt_context(n_noise: int, statements: list[tuple[float, int, str]]) -> str:
    """`n_noise` noise lines with each (fraction, order, statement) inserted before line int(fraction * n)."""
    placed = sorted((int(frac * (n_noise + 1)), order, text) for frac, order, text in statements)
    lines: list[str] = []
    k = 0
    for i in range(n_noise + 1):
        while k < len(placed) and placed[k][0] <= i:
            lines.append(placed[k][2])
            k += 1
        if i < n_noise:
            lines.append(NOISE)
    return HEADER + "\n".join(lines)


def resolve(context: str) -> dict[str, str]:
    """Variable -> the literal value it ends up holding, from the `VAR` lines of a context."""
    assign: dict[str, str] = {}
    for line in context.splitlines():
        if line.startswith("VAR "):
            name, _, rhs = line[4:].partition(" = ")
            assign[name] = rhs
    values = {}
    for name in assign:
        rhs, seen = assign[name], {name}
        while rhs.startswith("VAR ") and rhs[4:] not in seen:
            seen.add(rhs[4:])
            rhs = assign.get(rhs[4:], rhs)
        values[name] = rhs
    return values


def generate_vt(
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
        n_chains = CHAINS_PER_TURN * num_turns
        names: set[str] = set()
        while len(names) < n_chains * (HOPS + 1):
            names.add("".join(rng.choices(string.ascii_uppercase, k=NAME_LEN)))
        ordered = sorted(names)
        rng.shuffle(ordered)
        values = rng.sample(range(10000, 100000), n_chains)
        chains = [ordered[c * (HOPS + 1) : (c + 1) * (HOPS + 1)] for c in range(n_chains)]
        statements = []
        for c, chain in enumerate(chains):
            fracs = sorted(rng.random() for _ in chain)
            for step, (frac, text) in enumerate(zip(fracs, _chain_statements(chain, values[c]))):
                statements.append((frac, c * (HOPS + 1) + step, text))
        n = largest_fitting(lambda k: vt_context(k, statements), count_tokens, context_tokens, start=max(16, context_tokens // 30))
        context = vt_context(n, statements)
        if count_tokens(context) > context_tokens:
            raise ValueError(f"context_tokens={context_tokens} cannot hold {n_chains} chains of {HOPS} hops")
        turns = tuple(
            Turn(
                question=QUESTION.format(value=values[CHAINS_PER_TURN * t], count=HOPS + 1),
                answer=list(chains[CHAINS_PER_TURN * t]),
                extras={"decoy_value": str(values[CHAINS_PER_TURN * t + 1])},
            )
            for t in range(num_turns)
        )
        samples.append(
            Sample(
                id=f"vt-{seed}-{index}",
                context=context,
                turns=turns,
                # `index` and `length` (the target size in tokens) as the hub's RULER rows have them.
                metadata={"index": index, "length": context_tokens, "num_noise": n, "hops": HOPS, "chains": n_chains,
                          "seed": seed, "synthetic": True},
            )
        )
    return samples

"""Seeded, tokenizer-aware generators for SCBench's synthetic tasks (no official generators exist).

Every generator takes `count_tokens` (text -> number of tokens under the served model's tokenizer),
an explicit `seed`, and uses only a local RNG, so the same arguments give the same samples.
"""

from __future__ import annotations

from collections.abc import Callable

from data.generators.kv import generate_kv

TokenCounter = Callable[[str], int]

# task name -> generator(count_tokens, *, num_samples, context_tokens, num_turns, seed)
GENERATORS = {"kv": generate_kv}


def token_counter(tokenizer) -> TokenCounter:
    """Counts tokens the way the server will see the text (no BOS/EOS added)."""

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count

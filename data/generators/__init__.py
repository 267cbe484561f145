"""Seeded, tokenizer-aware generators for SCBench's synthetic tasks (no official generators exist).

Every generator takes `count_tokens` (text -> number of tokens under the served model's tokenizer),
an explicit `seed`, and uses only a local RNG, so the same arguments give the same samples:
`generator(count_tokens, *, num_samples, context_tokens, num_turns, seed)`. A task module names
its generator (`programs.spec.TaskSpec.generator`); the tasks that have one are those listed by
`python cli.py data list`.
"""

from __future__ import annotations

from collections.abc import Callable

from data.generators.kv import generate_kv
from data.generators.mf import generate_mf
from data.generators.prefix_suffix import generate_prefix_suffix
from data.generators.repoqa_and_kv import generate_repoqa_and_kv
from data.generators.summary_with_needles import generate_summary_with_needles
from data.generators.vt import generate_vt

TokenCounter = Callable[[str], int]

__all__ = [
    "TokenCounter", "generate_kv", "generate_mf", "generate_prefix_suffix", "generate_repoqa_and_kv",
    "generate_summary_with_needles", "generate_vt", "token_counter",
]


def token_counter(tokenizer) -> TokenCounter:
    """Counts tokens the way the server will see the text (no BOS/EOS added)."""

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count

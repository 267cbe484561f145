"""SCBench's middle truncation: a prompt longer than the budget keeps its first and last halves.

The official runner cuts the whole first prompt to `max_seq_length - max_new_tokens x turns` tokens
(Mix tasks: the sum of both sub-task budgets x turns / 2; multi-request: 1,000 tokens fewer). Here the
cut falls on the context, sized so the first prompt (instruction + context + first question) fits
that budget; the questions and instruction stay whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from data.sample import Sample


def prompt_budget(max_seq_len: int, max_new_tokens: int | Mapping[str, int], num_turns: int, mode: str) -> int:
    """Tokens the first prompt may have, as the official runner computes it."""
    if isinstance(max_new_tokens, Mapping):
        budget = max_seq_len - sum(max_new_tokens.values()) * num_turns // 2
    else:
        budget = max_seq_len - max_new_tokens * num_turns
    if mode == "multi-request":
        budget -= 1000
    return budget


def truncate_middle(tokenizer, text: str, max_tokens: int) -> tuple[str, int, int]:
    """(text, tokens before, tokens after): the first and last max_tokens // 2 tokens of `text`."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text, len(ids), len(ids)
    half = max(max_tokens, 0) // 2
    kept = ids[:half] + (ids[-half:] if half else [])
    return tokenizer.decode(kept), len(ids), len(kept)


def truncate_sample(tokenizer, sample: Sample, context_budget: int) -> Sample:
    """The sample with its context cut in the middle to `context_budget` tokens (if longer).

    The cut is recorded in `metadata["truncation"]` (tokens before and after).
    """
    if context_budget < 1:
        raise ValueError(f"no room for the context: {context_budget} tokens left after the questions and answers")
    context, before, after = truncate_middle(tokenizer, sample.context, context_budget)
    if before == after:
        return sample
    return replace(sample, context=context, metadata={**sample.metadata, "truncation": {"context_tokens_before": before, "context_tokens_after": after}})

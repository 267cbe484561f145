"""SCBench's middle truncation of the first prompt (scbench/run_scbench.py at fb56c91).

The official runner builds the session's first prompt (the templated first turn in multi-turn mode,
the templated context in multi-request mode), encodes it with the tokenizer's special tokens
(`tok.encode`), and when that is longer than `max_input_length` keeps its first and last
`max_input_length // 2` tokens. `max_input_length` is `max_seq_length - max_new_tokens x turns`
(Mix tasks: `sum(max_new_tokens) x turns // 2`), 1,000 tokens fewer in multi-request mode; `turns`
is the first row's number of turns after `--max_turns`. A negative budget cuts nothing.

Here the same tokens are chosen, and the prompt's text is cut at their character offsets, so the
text sent is the official truncated prompt as closely as text allows (the tokens at the seam may
merge differently when the server tokenizes the text again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MULTI_REQUEST = "multi-request"
DEFAULT_MAX_SEQ_LEN = 131_072  # the official --max_seq_length


def prompt_budget(max_seq_len: int, max_new_tokens: int | Mapping[str, int], num_turns: int, mode: str) -> int:
    """The official `max_input_length`: tokens the first prompt may keep.

    Raises ValueError where the official runner stops: a Mix task whose answer budget exceeds
    `max_seq_len`.
    """
    if isinstance(max_new_tokens, Mapping):
        if max(max_new_tokens.values()) > max_seq_len:
            raise ValueError(f"answers of up to {max(max_new_tokens.values())} tokens do not fit --max-seq-len {max_seq_len}")
        budget = max_seq_len - sum(max_new_tokens.values()) * num_turns // 2
    else:
        if max_new_tokens >= max_seq_len:  # as the official runner does
            max_new_tokens = 500
        budget = max_seq_len - max_new_tokens * num_turns
    if mode == MULTI_REQUEST:
        budget -= 1000
    return budget


def effective_max_seq_len(requested: int | None, context_length: int | None) -> int | None:
    """`--max-seq-len`, capped to the served model's context length (None or 0: no truncation)."""
    if not requested:
        return None
    return min(requested, context_length) if context_length else requested


def fits_without_tokenizing(text: str, max_tokens: int) -> bool:
    """True when `text` cannot exceed `max_tokens` tokens under any byte-level or byte-fallback
    tokenizer (every token covers at least one UTF-8 byte; a few special tokens may be added), so
    a short prompt need not be tokenized at all."""
    return max_tokens < 0 or len(text.encode("utf-8")) + _ADDED_SPECIAL_TOKENS <= max_tokens


_ADDED_SPECIAL_TOKENS = 8  # BOS / EOS a tokenizer may add on encode, with room to spare


@dataclass(frozen=True)
class Cut:
    """A prompt after middle truncation; `start:end` is the removed span of the original text."""

    text: str
    tokens_before: int
    tokens_after: int  # what the official runner keeps (2 x budget // 2)
    start: int = 0
    end: int = 0

    @property
    def cut(self) -> bool:
        return self.end > self.start

    def record(self, budget: int) -> dict[str, int]:
        return {"max_input_length": budget, "prompt_tokens_before": self.tokens_before,
                "prompt_tokens_after": self.tokens_after, "cut_start": self.start, "cut_end": self.end}


def truncate_prompt(tokenizer, text: str, max_tokens: int) -> Cut:
    """`text` cut as the official `truncate_by_tokens(text, tok, max_tokens)` cuts its token ids.

    Raises ValueError when the budget keeps no token at all (the official runner fails its own
    assertion there).
    """
    encoded = tokenizer(text, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    n = len(ids)
    if max_tokens < 0 or n <= max_tokens:
        return Cut(text, n, n)
    half = max_tokens // 2
    if half == 0:
        raise ValueError(f"no room for the prompt: {max_tokens} tokens left after the answers ({n} needed)")
    # Byte-level tokens tile the text: a kept token ends where the next one starts. Added special
    # tokens (BOS) have empty offsets at 0, so a head of BOS alone keeps no text (the server adds it).
    start = offsets[half - 1][1]
    end = offsets[n - half - 1][1]
    return Cut(text[:start] + text[end:], n, 2 * half, start, end)

"""Whether a turn found its session's context in the radix cache, or had to prefill it again.

Within a session every request extends text the server has already seen: a multi-turn turn extends
the previous turn's prompt, a multi-request question the committed context. If the radix cache
evicted part of it in between (the KV pool ran full), the server prefills those tokens again, and
a KV method's decisions on them are lost: a compressed context is compressed anew with the current
question, or its dropped keys reappear. The bench cannot stop a server from evicting, so it
records it: `recomputed_tokens` > 0 on a turn says how many held tokens were computed again.
"""

from __future__ import annotations


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def recomputed_tokens(tokenizer, held: str, sent: str, cached: int | None, page_size: int = 1) -> int | None:
    """Tokens of `held` (the session's text the server already had) that the request with prompt
    `sent` did not find cached. The server can reuse at most the tokens both texts start with
    (tokenized as the server tokenizes them), in whole pages; None when unknown."""
    if cached is None or not held:
        return None if cached is None else 0
    encode = tokenizer.encode
    reusable = common_prefix(encode(held), encode(sent))
    reusable -= reusable % max(page_size, 1)
    return max(0, reusable - cached)

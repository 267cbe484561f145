"""Recording a turn that had to prefill again context the radix cache had evicted."""

from __future__ import annotations

from bench.reuse_check import common_prefix, recomputed_tokens


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5, 6], [5, 6, 7]) == 2


def test_recomputed_tokens_counts_held_tokens_not_found_cached(tiny_tokenizer):
    held = "The context the server has already prefilled for this session. " * 8
    sent = held + "And the next question?"
    reusable = common_prefix(tiny_tokenizer.encode(held), tiny_tokenizer.encode(sent))
    assert reusable > 50
    assert recomputed_tokens(tiny_tokenizer, held, sent, cached=reusable) == 0
    assert recomputed_tokens(tiny_tokenizer, held, sent, cached=reusable + 3) == 0  # cached answer tokens too
    assert recomputed_tokens(tiny_tokenizer, held, sent, cached=0) == reusable  # all evicted
    assert recomputed_tokens(tiny_tokenizer, held, sent, cached=reusable // 2) == reusable - reusable // 2
    # whole pages only: a page size of 32 cannot reuse the last partial page
    assert recomputed_tokens(tiny_tokenizer, held, sent, cached=reusable - reusable % 32, page_size=32) == 0
    assert recomputed_tokens(tiny_tokenizer, "", sent, cached=0) == 0  # a session's first request
    assert recomputed_tokens(tiny_tokenizer, held, sent, cached=None) is None

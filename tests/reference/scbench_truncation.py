# Vendored from microsoft/MInference, scbench/run_scbench.py, commit
# fb56c917f618e8645f1cfc37535afd7424d78f0d.
# Copyright (c) Microsoft Corporation. Licensed under the MIT License.
#
# Changed: only `truncate_input` and `truncate_by_tokens` are kept (verbatim, prints included), plus
# `max_input_length`: the arithmetic of the `__main__` loop (lines 326-332, 348-354 and 384-394 of
# that file) wrapped in a function of its inputs, its statements unchanged. The module's model loading and
# imports (torch, vllm, minference) are dropped.
# Copyright (c) 2024 Microsoft
# Licensed under The MIT License [see LICENSE for details]

from __future__ import annotations


# sampling_params = SamplingParams(temperature=0.8, top_p=0.95)
def truncate_input(input: list, max_length: int, manner="middle"):
    if max_length < 0:
        return input
    if len(input) <= max_length:
        return input
    if manner == "middle":
        split = max_length // 2
        return input[0:split] + input[-split:]
    else:
        return None


def truncate_by_tokens(input, tok, max_tokens, manner: str = "middle"):
    tokens = tok.encode(input)
    len_before = len(tokens)
    print(f"# tokens before: {len_before}")
    tokens = truncate_input(tokens, max_length=max_tokens, manner=manner)
    len_after = len(tokens)  # type: ignore
    print(f"# tokens after: {len_after}")
    assert len_after <= len_before
    assert len_after <= max_tokens or max_tokens < 0
    return tokens


def max_input_length(examples, data_name, max_new_tokens, max_seq_length, max_turns, scdq_mode):
    """The official main loop's `max_input_length` for the examples of one task."""
    if isinstance(max_new_tokens, dict):
        assert (
            max(max_new_tokens.values()) <= max_seq_length
        ), "max_new_tokens must be less than max_seq_length"
    elif max_new_tokens >= max_seq_length:
        max_new_tokens = 500

    max_turn_size = len(examples[0]["multi_turns"])
    if max_turns > 0 and max_turns < max_turn_size:
        examples = [
            {**eg, "multi_turns": eg["multi_turns"][: max_turns]}
            for eg in examples
        ]
        max_turn_size = max_turns
    if data_name in [
        "scbench_summary_with_needles",
        "scbench_repoqa_and_kv",
    ]:
        max_input_length = max_seq_length - (
            sum(list(max_new_tokens.values())) * max_turn_size // 2
        )
    else:
        max_input_length = max_seq_length - max_new_tokens * max_turn_size
    if scdq_mode:
        max_input_length -= 1000
    return max_input_length

"""SCBench's Quest port, vendored for parity tests.

Source: microsoft/MInference, commit fb56c91, minference/modules/quest.py, MIT licence:
"Copyright (c) Microsoft Corporation. Licensed under the MIT License."
(itself adapted from mit-han-lab/Quest evaluation/quest_attention.py).

`local_heavy_hitter_mask` is verbatim. `quest_decode_kernel` is verbatim except that it returns
(attn_output, mask_bottom) instead of attn_output alone. SCBench calls it from
minference/modules/forward.py `attn_forward` for every forward whose query length differs from
the cache length (every decode step and every multi-row follow-up), in every layer, with K/V
already repeated to the query heads and decoding_kwargs = {"layer_idx", "attn_forward_config",
"position_ids", "num_key_value_groups"} (so attention_mask is None).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def local_heavy_hitter_mask(attn_weights, token_budget, chunk_size):
    # attn_weights (BS, head, query, keys)

    # expend attn_weights to be divisible by chunk_size
    seq_length = attn_weights.shape[-1]
    padding_length = chunk_size - ((seq_length - 1) % chunk_size + 1)
    attn_weights = torch.cat(
        [
            attn_weights,
            torch.ones(
                (
                    attn_weights.shape[0],
                    attn_weights.shape[1],
                    attn_weights.shape[2],
                    padding_length,
                ),
                device=attn_weights.device,
            )
            * torch.tensor(torch.finfo(attn_weights.dtype).min),
        ],
        dim=-1,
    )

    # chunk attn_weights into chunk_size tokens
    chunk_attn_weights = attn_weights.reshape(
        attn_weights.shape[0],
        attn_weights.shape[1],
        attn_weights.shape[2],
        attn_weights.shape[3] // chunk_size,
        chunk_size,
    ).amax(dim=-1)

    _, topk = chunk_attn_weights.topk(
        k=min(max(3, token_budget // chunk_size), chunk_attn_weights.size(-1)), dim=-1
    )
    # repeat topk chunk_size times and recover the original indexes (* chunk_size + arange(chunk_size))
    topk = topk.unsqueeze(-1).repeat(
        1, 1, 1, 1, chunk_size
    ) * chunk_size + torch.arange(chunk_size, device=topk.device)
    topk = topk.reshape(topk.shape[0], topk.shape[1], topk.shape[2], -1)
    mask_bottom = torch.zeros_like(attn_weights, dtype=torch.bool)
    mask_bottom.scatter_(-1, topk, True)

    # remove the padding
    mask_bottom = mask_bottom[:, :, :, :seq_length]

    return mask_bottom


def quest_decode_kernel(
    query_states,
    key_states,
    value_states,
    decoding_kwargs,
):
    chunk_size = decoding_kwargs["attn_forward_config"].get("chunk_size", 16)
    token_budget = decoding_kwargs["attn_forward_config"].get("token_budget", 1024)
    attention_mask = decoding_kwargs.get("attention_mask", None)
    position_ids = decoding_kwargs.get("position_ids", None)
    kv_seq_len = key_states.size(-2)
    bsz, _, q_len, _ = query_states.shape

    attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(
        query_states.size(-1)
    )

    sign = (query_states > 0) + (
        ~(query_states > 0)
    ) * -1  # [bsz, nh, q_len, kv_seq_len]
    if sign.size(-2) != 1:
        sign = sign.sum(dim=-2, keepdim=True)
    max_key = key_states * sign
    postive_query = query_states * sign

    # expend max_key to be divisible by chunk_size
    seq_length = max_key.shape[-2]
    padding_length = chunk_size - ((seq_length - 1) % chunk_size + 1)
    max_key = torch.cat(
        [
            max_key,
            torch.ones(
                (max_key.shape[0], max_key.shape[1], padding_length, max_key.shape[3]),
                device=max_key.device,
            )
            * torch.tensor(torch.finfo(max_key.dtype).min),
        ],
        dim=-2,
    )

    # chunk max_key into chunk_size tokens
    chunk_max_key = max_key.reshape(
        max_key.shape[0],
        max_key.shape[1],
        max_key.shape[2] // chunk_size,
        chunk_size,
        max_key.shape[3],
    ).amax(dim=-2)

    # duplicate chunk_max_key chunk_size times
    chunk_max_key = chunk_max_key.unsqueeze(-2).repeat(1, 1, 1, chunk_size, 1)
    # reshape chunk_max_key to the original shape
    chunk_max_key = chunk_max_key.reshape(
        chunk_max_key.shape[0], chunk_max_key.shape[1], -1, chunk_max_key.shape[-1]
    )[:, :, :seq_length, :]

    quantized_weight = torch.matmul(  # [bsz, nh, q_len, kv_seq_len]
        postive_query.float(),
        chunk_max_key.transpose(2, 3),
    )

    if attention_mask is not None:
        if attention_mask.size() != (bsz, 1, q_len, kv_seq_len):
            raise ValueError(
                f"Attention mask should be of size {(bsz, 1, q_len, kv_seq_len)}, but is {attention_mask.size()}"
            )
        attn_weights = attn_weights + attention_mask
        attn_weights = torch.max(
            attn_weights, torch.tensor(torch.finfo(attn_weights.dtype).min)
        )
        quantized_weight = quantized_weight + attention_mask
        quantized_weight = torch.max(
            quantized_weight, torch.tensor(torch.finfo(quantized_weight.dtype).min)
        )

    token_budget = min(kv_seq_len, token_budget)
    attn_weights_for_selection = quantized_weight

    if token_budget > 0:
        mask_bottom = local_heavy_hitter_mask(
            attn_weights_for_selection, token_budget, chunk_size
        )  # Default: No padding applied to input
    else:
        mask_bottom = torch.zeros_like(attn_weights_for_selection, dtype=torch.bool)

    mask_bottom = torch.tril(mask_bottom, diagonal=position_ids[0][0].item())
    attn_weights[~mask_bottom] = torch.tensor(torch.finfo(attn_weights.dtype).min)

    # upcast attention to fp32
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(
        query_states.dtype
    )
    attn_output = torch.matmul(attn_weights, value_states)

    return attn_output, mask_bottom

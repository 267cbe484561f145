"""duo-attention's pattern loading, head sparsification and streaming mask, vendored for the
parity tests.

Source: https://github.com/mit-han-lab/duo-attention, duo_attn/utils.py (`load_attn_pattern`,
`sparsify_attention_heads`) and duo_attn/patch/streaming_attn.py (`generate_streaming_mask`),
commit fe93c314ae87306ef6629dc16713250b4718ffe7. Licence: MIT, "Copyright (c) 2024 MIT HAN Lab".

Changed: nothing in the function bodies; only the imports they need.
"""

import json
import os

import numpy as np
import torch


def load_attn_pattern(attn_load_dir):
    full_attention_heads = np.loadtxt(
        os.path.join(attn_load_dir, "full_attention_heads.tsv"),
        dtype=float,
        delimiter="\t",
    )
    full_attention_heads = np.clip(full_attention_heads, 0, 1)
    config = json.load(open(os.path.join(attn_load_dir, "config.json")))
    sink_size = config["sink_size"]
    recent_size = config["recent_size"]
    return full_attention_heads, sink_size, recent_size


def sparsify_attention_heads(full_attention_heads, threshold=None, sparsity=None):
    # add a very small random noise to full_attention_heads to break ties
    full_attention_heads += np.random.uniform(0, 1e-6, full_attention_heads.shape)

    if sparsity is not None:
        # ignore the threshold and use the sparsity
        # set the sparsity small values to 0 and others to 1
        threshold = np.quantile(full_attention_heads, sparsity)
    else:
        assert threshold is not None, "Either threshold or sparsity must be provided"

    if sparsity >= 1:
        # all heads are pruned
        threshold = 2
    if sparsity <= 0:
        # no heads are pruned
        threshold = -1

    full_attention_heads = (full_attention_heads >= threshold).astype(float)
    sparsity = 1 - np.mean(full_attention_heads)
    return full_attention_heads, sparsity


@torch.no_grad()
def generate_streaming_mask(seq_len, sink_size, recent_size, device):
    # round seq_len to the nearest multiple of 8
    seq_len = (seq_len + 7) // 8 * 8
    ones = torch.ones(seq_len, seq_len, dtype=torch.bool)
    causal_mask = ~torch.triu(ones, diagonal=1)
    recent_mask = torch.triu(ones, diagonal=-recent_size + 1)
    sink_mask = ones
    sink_mask[:, sink_size:] = False
    mask = (recent_mask | sink_mask) & causal_mask
    return mask.to(device=device).unsqueeze(0).unsqueeze(0)

"""SCBench's A-shape and Tri-shape prefill masks, transcribed for parity tests.

Source: microsoft/MInference, commit fb56c91, minference/ops/streaming_kernel.py, MIT licence:
"Copyright (c) Microsoft Corporation. Licensed under the MIT License."

`a_shape_kernel` and `tri_shape_kernel` keep their control flow (defaults n_init 128, n_local 3968,
n_last 100; `n_last = min(n_last, q_len - 1)`; the A-shape part of Tri-shape runs on
q[:-n_last] against k[:-n_last]); the Triton attention (`TritonMultiStageDotProductionAttention`,
`_attn_fwd_inner`) is replaced by the masks it applies, returned as bool [q_len, k_len]:
`append(q, k, v, sliding_window=n_local)` keeps dist in [0, n_local) with
dist = row - col + (k_len - q_len); the complement call over the first n_init keys keeps
dist >= n_local. Tri-shape's last rows are plain causal softmax.
"""

from __future__ import annotations

import torch


def _window(q_len, k_len, offset, size, complement=False):
    dist = torch.arange(q_len)[:, None] - torch.arange(k_len)[None, :] + offset
    return dist >= size if complement else (dist >= 0) & (dist < size)


def a_shape_kernel(q_len, k_len, config):
    n_init = config["attn_forward_config"].get("n_init", 128)
    n_local = config["attn_forward_config"].get("n_local", 3968)
    mask = _window(q_len, k_len, k_len - q_len, n_local)
    if k_len > n_local:
        init = _window(q_len, min(n_init, k_len), k_len - q_len, n_local, complement=True)
        mask[:, : init.shape[1]] |= init
    return mask


def tri_shape_kernel(q_len, k_len, config):
    n_last = config["attn_forward_config"].get("n_last", 100)
    n_last = min(n_last, q_len - 1)
    mask = torch.zeros(q_len, k_len, dtype=torch.bool)
    mask[: q_len - n_last, : k_len - n_last] = a_shape_kernel(q_len - n_last, k_len - n_last, config)
    rows = torch.arange(q_len - n_last, q_len)[:, None] + (k_len - q_len)
    mask[q_len - n_last :] = torch.arange(k_len)[None, :] <= rows
    return mask

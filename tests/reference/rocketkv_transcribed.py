"""RocketKV's selection rules, transcribed for the parity tests (not vendored).

Source described: NVlabs/RocketKV, commit 63637c8 (the repository's only commit),
  pipeline/inf_stream_llm/inf_llm/attention/rocket.py     (`rocket_forward`: SnapKV branch, hybrid
                                                            sparse attention branch)
  pipeline/inf_stream_llm/inf_llm/attention/rocket_mt.py  (`rocket_mt_forward`)
  pipeline/inf_stream_llm/infllm_utils.py                  (`compress`: the budget split)
and the paper, "RocketKV: Accelerating Long-Context LLM Inference via Two-Stage KV Cache
Compression" (Behnam et al., ICML 2025, arXiv 2502.14051), sections 3.1-3.3.

Licence: that code is under the NVIDIA License (non-commercial use only; redistribution only under
that licence with a full copy of it), which this project cannot take on, so nothing is copied from
it. This module restates, in its own words and in the reference's tensor layout ([batch, heads,
tokens, dim], batch 1), what the reference computes, step for step in the same order and dtypes,
so that the same tensors give the same selections. It keeps the reference's own cache handling
(the compressed cache is a gathered tensor; decoded tokens are appended to it), which the project
replaces with a visibility mask over the full cache.
"""

from __future__ import annotations

import math

import torch


def budget_split(max_seq_len: int, total_max_new_tokens: int, token_budget: int, is_scbench: bool = True) -> dict:
    """The per-sample parameters RocketKV's evaluation derives (`compress` in infllm_utils.py)."""
    ratio = max(1.0, max_seq_len / token_budget)
    r = min(0.2 + math.log2(ratio) * 0.06, 0.8)
    capacity = int(max_seq_len / ratio**r)
    capacity = max(capacity, min(2 * total_max_new_tokens, max_seq_len))
    return {
        "kernel_size": 63,
        "window_size": 128 if is_scbench else 32,
        "prompt_budget": capacity - total_max_new_tokens,
        "topk": token_budget // 2,
        "compression_ratio": max(1.0, capacity / token_budget),
    }


def _repeat_heads(x: torch.Tensor, times: int) -> torch.Tensor:
    b, h, n, d = x.shape
    return x[:, :, None].expand(b, h, times, n, d).reshape(b, h * times, n, d)


def stage1_kept_indices(
    h_q: torch.Tensor, h_k: torch.Tensor, prompt_budget: int, window_size: int, kernel_size: int
) -> torch.Tensor:
    """h_q [1, Hq, len_q, D] (the prefill's queries), h_k [1, Hkv, len_k, D] (the whole cache).
    Returns the positions kept per KV head, [1, Hkv, prompt_budget], ascending: the top
    prompt_budget - w of the pooled window scores, then the window's own w positions. (The
    reference gathers K/V at these positions; len_k <= prompt_budget keeps everything.)"""
    _, hq, len_q, d = h_q.shape
    hkv, len_k = h_k.shape[1], h_k.shape[2]
    w = min(window_size, len_q)
    observed = h_q[:, :, -w:]
    rel = torch.arange(w)[:, None] - torch.arange(len_k)[None, :] + len_k - w
    allowed = (rel >= 0).view(1, 1, w, len_k)
    logits = torch.matmul(observed, _repeat_heads(h_k, hq // hkv).transpose(-1, -2)) / math.sqrt(d)
    logits = logits.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(logits, dim=-1).masked_fill(~allowed, 0)
    mass = probs[:, :, -w:, : len_k - w].sum(dim=-2)  # [1, Hq, len_k - w]
    mass = mass.view(1, hkv, hq // hkv, len_k - w).sum(dim=2)
    mass = torch.nn.functional.max_pool1d(mass, kernel_size=kernel_size, padding=kernel_size // 2, stride=1)
    chosen = mass.topk(prompt_budget - w, dim=-1).indices.sort().values
    window = torch.arange(len_k - w, len_k).expand(1, hkv, w)
    return torch.cat([chosen, window], dim=-1)


def stage2_topk(h_q: torch.Tensor, h_k: torch.Tensor, topk: int, compression_ratio: float) -> torch.Tensor:
    """One decode step of hybrid sparse attention: h_q [1, Hq, 1, D], h_k [1, Hkv, len_k, D] the
    cache the step sees (compressed prompt + decoded tokens, in order). Returns the indices into
    h_k's tokens each KV head attends, [1, Hkv, min(topk, len_k)] (the reference's order)."""
    b, hq, len_q, d = h_q.shape
    hkv, len_k = h_k.shape[1], h_k.shape[2]
    rel = torch.arange(len_q)[:, None] - torch.arange(len_k)[None, :] + len_k - len_q
    allowed = (rel >= 0).view(1, 1, len_q, len_k)
    Q = h_q.view(b, hkv, hq // hkv, len_q, d)
    K = h_k.unsqueeze(2)
    # sequence reduction: keys turned to the sign of the group's summed query, max over chunks
    positive = Q.sum(dim=2, keepdim=True) > 0
    sign = positive + (~positive) * -1
    signed_keys, signed_query = K * sign, Q * sign
    chunk = math.ceil(math.sqrt(compression_ratio))
    if chunk > compression_ratio:
        chunk = 1
    pad = chunk - ((len_k - 1) % chunk + 1)
    lowest = torch.ones(*signed_keys.shape[:3], pad, d, dtype=signed_keys.dtype) * torch.tensor(
        torch.finfo(signed_keys.dtype).min
    )
    signed_keys = torch.cat([signed_keys, lowest], dim=-2)
    chunk_keys = signed_keys.reshape(*signed_keys.shape[:3], signed_keys.shape[3] // chunk, chunk, d).amax(dim=-2)
    # head-dimension reduction: the r largest query components (|Q| averaged over the group)
    r = int(d * chunk / compression_ratio)
    abs_q = Q.abs()
    comps = abs_q.mean(dim=2, keepdim=True).topk(r, dim=-1).indices
    q_hat = signed_query.gather(-1, comps.expand(*signed_query.shape[:-1], r))
    k_hat = chunk_keys.gather(-1, comps.expand(*chunk_keys.shape[:-1], r))
    approx = q_hat @ k_hat.transpose(-1, -2)
    approx = approx.unsqueeze(-1).repeat(1, 1, 1, 1, 1, chunk).reshape(*approx.shape[:4], -1)[..., :len_k]
    approx = torch.where(allowed.unsqueeze(2), approx, float("-inf"))
    temperature = torch.sqrt(d * q_hat.abs().sum(dim=-1, keepdim=True) / abs_q.sum(dim=-1, keepdim=True))
    s_hat = torch.softmax(approx / temperature, dim=-1)
    return s_hat.mean(dim=2, keepdim=True).topk(min(topk, len_k), dim=-1).indices[:, :, 0, 0]

"""Pure-torch stand-ins for the two `sgl_kernel` CPU helpers SGLang's CPU engine imports.

Served under the name `sgl_kernel` only when no real `sgl_kernel` is installed. On CPUs without AMX
SGLang imports but does not call them; they are implemented exactly anyway, so a code path that does
call them computes the right thing instead of failing.
"""

from __future__ import annotations

import ctypes

import torch


def assign_req_to_token_pool_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    """req_to_token[req_pool_indices[i], start[i]:end[i]] = next (end-start) entries of out_cache_loc."""
    del pool_len  # row width; implied by req_to_token's shape
    pos = 0
    for row, start, end in zip(req_pool_indices.tolist(), start_offset.tolist(), end_offset.tolist()):
        n = end - start
        req_to_token[row, start:end] = out_cache_loc[pos : pos + n].to(req_to_token.dtype)
        pos += n


def copy_all_layer_kv_cache_cpu(
    data_ptrs: torch.Tensor,
    strides: torch.Tensor,
    tgt_loc: torch.Tensor,
    src_loc: torch.Tensor,
) -> None:
    """For each KV buffer (base pointer, bytes per slot), copy slot src_loc[j] onto tgt_loc[j]."""
    for base, stride in zip(data_ptrs.tolist(), strides.tolist()):
        for tgt, src in zip(tgt_loc.tolist(), src_loc.tolist()):
            ctypes.memmove(base + tgt * stride, base + src * stride, stride)


def _unavailable(name: str):
    def kernel(*args, **kwargs):
        raise NotImplementedError(
            f"sgl_kernel.{name} is a compiled CPU kernel (speculative decoding) that this fallback "
            "does not provide; install SGLang's CPU kernel build to use that feature"
        )

    kernel.__name__ = name
    return kernel


# Imported at module level by SGLang's speculative-decoding modules when the device is CPU; the
# server imports those modules even when speculative decoding is off, and never calls them then.
_SPECULATIVE_ONLY = (
    "assign_draft_cache_locs_contiguous_cpu",
    "assign_extend_cache_locs_cpu",
    "build_tree_kernel_efficient_cpu",
    "fill_accept_out_cache_loc_cpu",
    "fill_bonus_tokens_cpu",
    "rotate_input_ids_cpu",
    "verify_tree_greedy_cpu",
)
globals().update({name: _unavailable(name) for name in _SPECULATIVE_ONLY})

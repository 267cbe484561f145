"""SCBench's MInference prefill (vertical-slash), vendored for parity tests.

Source: microsoft/MInference, commit fb56c91, MIT licence:
"Copyright (c) Microsoft Corporation. Licensed under the MIT License."

- `sum_all_diagonal_matrix`, `LAST_Q_MASK` and `vertical_and_slash_kernel`: from
  minference/modules/minference_forward.py (module level; `minference_prefill_kernel`'s inner
  function, the one `minference_prefill_forward` and the vLLM path call). Changed: `LAST_Q_MASK`
  and the zero matrix are built on the CPU (no "cuda"); `q_len` and `head_dim`, closure variables
  in the original, are computed from q; `vertical_slash_sparse_attention` below is called as in
  the original but returns the attended mask.
- `vertical_slash_sparse_attention`: from minference/ops/pit_sparse_flash_attention_v2.py (the
  path without sgl_kernel / vLLM kernels). Changed: padding of q/k/v and the Triton call are
  replaced by `attended_mask`, which returns bool [B, H, n, n], the (row, key) pairs the Triton
  kernel `_triton_mixed_sparse_attn_fwd_kernel` attends: block ranges with its causal mask
  `cols <= offs_m` and `cols < seqlen`, and the listed columns with no further mask.
- `convert_vertical_slash_indexes`: a line-by-line Python transcription of the CUDA kernel
  `convert_vertical_slash_indexes_kernel` in csrc/vertical_slash_index.cu (CUDA only upstream),
  same loop, same variables, one (batch, head, row block) at a time.
"""

from __future__ import annotations

import math

import torch

last_q = 64
arange = torch.arange(last_q)
LAST_Q_MASK = arange[None, None, :, None] >= arange[None, None, None, :]


def sum_all_diagonal_matrix(mat: torch.tensor):
    b, h, n, m = mat.shape
    zero_mat = torch.zeros((b, h, n, n)).to(mat.device) # Zero matrix used for padding
    mat_padded =  torch.cat((zero_mat, mat, zero_mat), -1) # pads the matrix on left and right
    mat_strided = mat_padded.as_strided((1, 1, n, n + m), (1, n * (2 * n + m), 2 * n + m + 1, 1)) # Change the strides
    sum_diags = torch.sum(mat_strided, 2) # Sums the resulting matrix's columns
    return sum_diags[:,:,1:]


def vertical_and_slash_kernel(q, k, v, vertical_size, slash_size):
    q_len, head_dim = q.shape[2], q.size(-1)
    vertical_size, slash_size  = min(q_len, max(vertical_size, 30)), min(q_len, max(slash_size, 50))
    last_q = min(64, q_len)
    qk = torch.einsum(f'bhmk, bhnk -> bhmn', q[:,:,-last_q:,:], k) / math.sqrt(head_dim)
    qk[:, :, :, -last_q:] = torch.where(LAST_Q_MASK[...,-last_q:,-last_q:].to(q.device), qk[:, :, :, -last_q:], -torch.inf)
    qk = torch.nn.functional.softmax(qk, dim=-1, dtype=torch.float32)
    vertical = qk.sum(-2, keepdim=True)
    vertical[...,:30] = torch.inf
    vertical_topk = torch.topk(vertical, vertical_size, -1).indices

    slash = sum_all_diagonal_matrix(qk)[...,:-last_q + 1]
    slash[...,-100:] = torch.inf
    slash_topk = slash
    slash = (q_len - 1) - torch.topk(slash, slash_size, -1).indices

    return vertical_slash_sparse_attention(q, k, v, vertical_topk, slash)


def vertical_slash_sparse_attention(
    query: torch.Tensor,  # [BATCH, N_HEADS, N_CTX, D_HEAD]
    key: torch.Tensor,    # [BATCH, N_HEADS, N_CTX, D_HEAD]
    value: torch.Tensor,  # [BATCH, N_HEADS, N_CTX, D_HEAD]
    v_idx: torch.Tensor,  # [BATCH, N_HEADS, NNZ_V]
    s_idx: torch.Tensor,  # [BATCH, N_HEADS, NNZ_S]
    block_size_M: int = 64,
    block_size_N: int = 64,
):
    batch_size, num_heads, context_size, head_dim = query.shape
    v_idx = v_idx.to(torch.int32).reshape((batch_size, num_heads, -1)).sort(dim=-1, descending=False)[0]
    s_idx = s_idx.to(torch.int32).reshape((batch_size, num_heads, -1)).sort(dim=-1, descending=True)[0]
    seqlens = torch.tensor([context_size], dtype=torch.int32, device=query.device)
    block_count, block_offset, column_count, column_index = convert_vertical_slash_indexes(
        seqlens, v_idx, s_idx, context_size, block_size_M, block_size_N,
    )
    return attended_mask(seqlens, block_count, block_offset, column_count, column_index, context_size,
                         block_size_M, block_size_N)


def convert_vertical_slash_indexes(seqlens, vertical_indexes, slash_indexes, context_size, BLOCK_SIZE_M, BLOCK_SIZE_N):
    batch_size, N_HEADS, NNZ_S = slash_indexes.shape
    NNZ_V = vertical_indexes.shape[2]
    N_ROWS = (context_size + BLOCK_SIZE_M - 1) // BLOCK_SIZE_M
    block_count = torch.zeros(batch_size, N_HEADS, N_ROWS, dtype=torch.int32)
    block_offset = torch.zeros(batch_size, N_HEADS, N_ROWS, NNZ_S, dtype=torch.int32)
    column_count = torch.zeros(batch_size, N_HEADS, N_ROWS, dtype=torch.int32)
    column_index = torch.zeros(batch_size, N_HEADS, N_ROWS, NNZ_V, dtype=torch.int32)
    for batch_idx in range(batch_size):
        seqlen = int(seqlens[batch_idx])
        for head_idx in range(N_HEADS):
            vertical = vertical_indexes[batch_idx, head_idx].tolist()
            slash = slash_indexes[batch_idx, head_idx].tolist()
            for block_idx_m in range(N_ROWS):
                start_m = block_idx_m * BLOCK_SIZE_M
                if start_m >= seqlen:
                    continue
                end_m = start_m + BLOCK_SIZE_M
                blocks, cols = [], []
                s = v = 0
                v_idx = vertical[v]; v += 1
                s_idx = slash[s]; s += 1
                while s_idx >= end_m:
                    s_idx = slash[s]; s += 1
                s_idx = max(end_m - s_idx, BLOCK_SIZE_M)
                range_start, range_end = s_idx - BLOCK_SIZE_M, s_idx
                while True:
                    if v_idx < range_end:
                        if v_idx < range_start:
                            cols.append(v_idx)
                        if v < NNZ_V:
                            v_idx = vertical[v]; v += 1
                        else:
                            v_idx = end_m + BLOCK_SIZE_M
                    else:
                        if s < NNZ_S:
                            s_idx = max(end_m - slash[s], BLOCK_SIZE_M); s += 1
                        else:
                            blocks += list(range(range_start, range_end, BLOCK_SIZE_N))  # save_blocks
                            break
                        if s_idx > range_end + BLOCK_SIZE_M:
                            blocks += list(range(range_start, range_end, BLOCK_SIZE_N))  # save_blocks
                            range_start = s_idx - BLOCK_SIZE_M
                            range_end = s_idx
                        elif s_idx > range_end:
                            range_end += BLOCK_SIZE_M
                block_count[batch_idx, head_idx, block_idx_m] = len(blocks)
                block_offset[batch_idx, head_idx, block_idx_m, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
                column_count[batch_idx, head_idx, block_idx_m] = len(cols)
                if cols:
                    column_index[batch_idx, head_idx, block_idx_m, : len(cols)] = torch.tensor(cols, dtype=torch.int32)
    return block_count, block_offset, column_count, column_index


def attended_mask(seqlens, block_count, block_offset, column_count, column_index, context_size, BLOCK_M, BLOCK_N):
    """bool [B, H, n, n]: the pairs `_triton_mixed_sparse_attn_fwd_kernel` gives a finite logit."""
    batch_size, num_heads, num_rows = block_count.shape
    out = torch.zeros(batch_size, num_heads, context_size, context_size, dtype=torch.bool)
    for b in range(batch_size):
        seqlen = int(seqlens[b])
        for h in range(num_heads):
            for start_m in range(num_rows):
                offs_m = torch.arange(start_m * BLOCK_M, min((start_m + 1) * BLOCK_M, seqlen))
                if offs_m.numel() == 0:
                    continue
                for i in range(int(block_count[b, h, start_m])):
                    cols = int(block_offset[b, h, start_m, i]) + torch.arange(BLOCK_N)
                    ok = (cols[None, :] < seqlen) & (cols[None, :] <= offs_m[:, None])
                    rr, cc = ok.nonzero(as_tuple=True)
                    out[b, h, offs_m[rr], cols[cc]] = True
                cols = column_index[b, h, start_m, : int(column_count[b, h, start_m])].long()
                out[b, h, offs_m[:, None], cols[None, :]] = True
    return out

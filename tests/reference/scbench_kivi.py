# Vendored from microsoft/MInference at commit fb56c917f618e8645f1cfc37535afd7424d78f0d,
# minference/modules/kivi.py:
#   pack_tensor, unpack_tensor (lines 112-161)
#   KiviCache: __init__ and update (lines 560-728), get_seq_length and
#   clear_temp_kv_cache (lines 940-953)
# Copyright (c) Microsoft Corporation. Licensed under the MIT License.
#
# Changed:
# - `triton_quantize_and_pack_along_last_dim` (lines 214-275) is a Triton kernel: here a faithful
#   torch transcription. Its min/max kernel becomes torch.min / torch.max along the group (the
#   file's own commented-out lines 243-244); its pack kernel `_pack_along_last_dim` becomes this
#   file's `pack_tensor` along the last dimension (the same bit layout: feature i of an int at bit
#   i * bits). Every other statement is the original's.
# - `attention_reads` transcribes what `kivi_forward` (lines 954-1075) reads: the quantized part
#   through `cuda_bmm_fA_qB_outer`, i.e. KIVI's CUDA kernel (jy-yuan/KIVI quant/csrc/gemv_cuda.cu,
#   commit 876b4d2d08e3b1d5f70d0969c299d8c7c42ddfb6, `bgemv2_kernel_outer_dim`: float32
#   `scale * code + zero` from float16 scale and zero, the casts of kivi_forward lines 963-969),
#   then the full-precision part, concatenated along the sequence as its attention weights are.
# - KiviCache no longer derives from transformers' Cache (it needs no model here); its config is
#   any object with `attn_kwargs`. `repeat_kv` is transformers' (as kivi.py imports it). Indexing
#   with a list of slices (deprecated in torch) is written with tuple(...) in pack/unpack_tensor.
# Copyright (c) 2024-2025 Microsoft
# Licensed under The MIT License [see LICENSE for details]
# Refer to the code in https://github.com/jy-yuan/KIVI/tree/main/quant

import numpy as np
import torch
from transformers.models.llama.modeling_llama import repeat_kv


def pack_tensor(data, bits, pack_dim):
    # Pack
    shape = data.shape
    feat_per_int = 32 // bits
    assert bits in [2, 4, 8], "Only 2, 4, 8 bits are supported"
    assert (
        shape[pack_dim] % feat_per_int == 0
    ), "Dimension length must be divisible by number of features per int"
    # BS, nh, T, nd // 16 # 16 is for 2bit
    code = torch.zeros(
        shape[:pack_dim] + (shape[pack_dim] // feat_per_int,) + shape[pack_dim + 1 :],
        dtype=torch.int32,
        device=data.device,
    )
    i = 0
    row = 0
    unpacked_indices = [slice(None)] * len(data.shape)
    packed_indices = [slice(None)] * len(data.shape)
    while row < code.shape[pack_dim]:
        packed_indices[pack_dim] = row
        for j in range(i, i + (32 // bits)):
            unpacked_indices[pack_dim] = j
            code[tuple(packed_indices)] |= data[tuple(unpacked_indices)] << (bits * (j - i))
        i += 32 // bits
        row += 1
    return code


def unpack_tensor(v_code: torch.FloatTensor, bits: int, pack_dim: int):
    assert bits in [2, 4, 8]
    shape = v_code.shape
    feat_per_int = 32 // bits
    new_shape = (
        shape[:pack_dim] + (shape[pack_dim] * feat_per_int,) + shape[pack_dim + 1 :]
    )
    unpacked_v_code = torch.zeros(new_shape, dtype=torch.int8, device=v_code.device)
    i = torch.arange(new_shape[pack_dim], device=v_code.device) // feat_per_int
    j = torch.arange(new_shape[pack_dim], device=v_code.device) % feat_per_int
    num = 0xFF >> (8 - bits)
    packed_indices = [slice(None)] * len(new_shape)
    packed_indices[pack_dim] = i
    if pack_dim == 2:
        unpacked_v_code = (
            (v_code[tuple(packed_indices)] >> (j * bits)[None, None, :, None]).to(torch.int16)
        ) & num
    elif pack_dim == 3:
        unpacked_v_code = ((v_code[tuple(packed_indices)] >> (j * bits)).to(torch.int16)) & num
    else:
        raise NotImplementedError
    return unpacked_v_code

def triton_quantize_and_pack_along_last_dim(
    data: torch.Tensor, group_size: int, bit: int
):
    assert len(data.shape) == 4
    shape = data.shape
    B, nh, D, T = shape
    # ================== Get Scale & Zeros ===============
    assert T % group_size == 0
    num_groups = T // group_size
    new_shape = (B * nh * D, num_groups, group_size)
    scale_mn_shape = B, nh, D, num_groups
    # Quantize
    data = data.reshape(new_shape)
    # (transcription) the _minmax_along_last_dim kernel:
    mn = torch.min(data, dim=-1, keepdim=True)[0].squeeze(-1)
    mx = torch.max(data, dim=-1, keepdim=True)[0].squeeze(-1)
    scale = (mx - mn) / (2**bit - 1)
    data = data - mn.unsqueeze(-1)
    data.div_(scale.unsqueeze(-1))
    data = data.clamp_(0, 2**bit - 1).round_().to(torch.int32)
    data = data.view(-1, T)
    feat_per_int = 32 // bit
    packshape = (
        np.prod(shape[:-1]),
        shape[-1] // feat_per_int,
    )
    # (transcription) the _pack_along_last_dim kernel:
    code = pack_tensor(data, bit, pack_dim=1)
    assert code.shape == packshape
    return (
        code.view(B, nh, D, -1),
        scale.reshape(scale_mn_shape),
        mn.reshape(scale_mn_shape),
    )


class KiviCache:
    def __init__(self, config):
        super().__init__()
        self.group_size = config.attn_kwargs.get("group_size", 32)
        self.bits = config.attn_kwargs.get("bits", 2)
        self.residual_length = config.attn_kwargs.get("residual_length", 32)
        self.group_size = config.attn_kwargs.get("group_size", 32)

        self.k_bits = self.bits
        self.v_bits = self.bits

        self.kv_cache = []
        self._seen_tokens = 0

        self.temp_key_cache = []
        self.temp_value_cache = []

    def update(
        self,
        key_states,
        value_states,
        layer_idx,
        cache_kwargs,
    ):
        update_global_past_kv = cache_kwargs.get("update_global_past_kv", True)
        query_states = cache_kwargs["query_states"]

        if layer_idx == 0:
            self._seen_tokens += key_states.size(-2)

        prefilling = False
        if len(self.kv_cache) == layer_idx:
            prefilling = True

            if key_states.shape[-2] % self.residual_length != 0:
                if key_states.shape[-2] < self.residual_length:
                    key_states_quant = None
                    key_states_full = key_states
                else:
                    key_states_quant = key_states[
                        :, :, : -(key_states.shape[-2] % self.residual_length), :
                    ].contiguous()
                    key_states_full = key_states[
                        :, :, -(key_states.shape[-2] % self.residual_length) :, :
                    ].contiguous()
            else:
                key_states_quant = key_states
                key_states_full = None

            if key_states_quant is not None:
                (
                    key_states_quant_trans,
                    key_scale_trans,
                    key_mn_trans,
                ) = triton_quantize_and_pack_along_last_dim(
                    key_states_quant.transpose(2, 3).contiguous(),
                    self.group_size,
                    self.k_bits,
                )
            else:
                key_states_quant_trans = None
                key_scale_trans = None
                key_mn_trans = None

            if value_states.shape[-2] <= self.residual_length:
                value_states_quant = None
                value_states_full = value_states
                value_scale = None
                value_mn = None
            else:
                value_states_quant = value_states[
                    :, :, : -self.residual_length, :
                ].contiguous()
                value_states_full = value_states[
                    :, :, -self.residual_length :, :
                ].contiguous()
                (
                    value_states_quant,
                    value_scale,
                    value_mn,
                ) = triton_quantize_and_pack_along_last_dim(
                    value_states_quant, self.group_size, self.v_bits
                )

            self.kv_cache.append(
                (
                    key_states_quant_trans,
                    key_states_full,
                    key_scale_trans,
                    key_mn_trans,
                    value_states_quant,
                    value_states_full,
                    value_scale,
                    value_mn,
                )
            )

            return (
                repeat_kv(key_states, query_states.size(1) // key_states.size(1)),
                repeat_kv(value_states, query_states.size(1) // value_states.size(1)),
            )

        else:  # decoding
            key_states_quant_trans = self.kv_cache[layer_idx][0]
            key_states_full = self.kv_cache[layer_idx][1]
            key_scale_trans = self.kv_cache[layer_idx][2]
            key_mn_trans = self.kv_cache[layer_idx][3]

            value_states_quant = self.kv_cache[layer_idx][4]
            value_states_full = self.kv_cache[layer_idx][5]
            value_scale = self.kv_cache[layer_idx][6]
            value_mn = self.kv_cache[layer_idx][7]

            if not update_global_past_kv:
                if len(self.temp_key_cache) == layer_idx:
                    self.temp_key_cache.append(key_states)
                    self.temp_value_cache.append(value_states)
                else:
                    self.temp_key_cache[layer_idx] = torch.cat(
                        [self.temp_key_cache[layer_idx], key_states], dim=-2
                    )
                    self.temp_value_cache[layer_idx] = torch.cat(
                        [self.temp_value_cache[layer_idx], value_states], dim=-2
                    )

                if key_states_full is not None:
                    key_states_full_rt = torch.cat(
                        [key_states_full, self.temp_key_cache[layer_idx]], dim=-2
                    )
                else:
                    key_states_full_rt = self.temp_key_cache[layer_idx]
                value_states_full_rt = torch.cat(
                    [value_states_full, self.temp_value_cache[layer_idx]], dim=-2
                )
            else:
                if key_states_full is not None:
                    key_states_full = torch.cat([key_states_full, key_states], dim=2)
                else:
                    key_states_full = key_states

                value_states_full = torch.cat([value_states_full, value_states], dim=2)
                key_states_full_rt = key_states_full
                value_states_full_rt = value_states_full

            self.kv_cache[layer_idx] = (
                key_states_quant_trans,
                key_states_full,
                key_scale_trans,
                key_mn_trans,
                value_states_quant,
                value_states_full,
                value_scale,
                value_mn,
            )

            key_out = (
                key_states_quant_trans,
                key_states_full_rt,  # key_states_full
                key_scale_trans,
                key_mn_trans,
            )
            value_out = (
                value_states_quant,
                value_states_full_rt,
                value_scale,
                value_mn,
            )
            return key_out, value_out

    def get_seq_length(self, layer_idx=0):
        if len(self.kv_cache) <= layer_idx:
            return 0
        return self._seen_tokens

    def clear_temp_kv_cache(self):
        if self.temp_key_cache:
            self._seen_tokens -= self.temp_key_cache[-1].shape[
                -2
            ]  # seq_len of temp_kv_cache
        self.temp_key_cache = []
        self.temp_value_cache = []


# -- kivi_forward's reads, transcribed (see the header) -------------------------------------------


def _dequant_kernel(code, scale, zero):
    """KIVI's kernel: float32 scale * code + zero, scale and zero cast to float16 first."""
    return code.float() * scale.to(torch.float16).float() + zero.to(torch.float16).float()


def attention_reads(key_out, value_out, group_size=32, bits=2):
    """(keys, values) [B, nh, T, D] that kivi_forward attends to at a decoding step, from what
    KiviCache.update returned: the dequantized quantized part, then the full-precision part."""
    key_states_quant_trans, key_states_full, key_scale_trans, key_mn_trans = key_out
    value_states_quant, value_states_full, value_scale, value_mn = value_out
    keys, values = [], []
    if key_states_quant_trans is not None:
        codes = unpack_tensor(key_states_quant_trans, bits, pack_dim=3)  # [B, nh, D, T]
        B, nh, D, T = codes.shape
        grouped = codes.view(B, nh, D, T // group_size, group_size)
        deq = _dequant_kernel(grouped, key_scale_trans[..., None], key_mn_trans[..., None])
        keys.append(deq.view(B, nh, D, T).transpose(2, 3))
    if key_states_full is not None:
        keys.append(key_states_full.float())
    if value_states_quant is not None:
        codes = unpack_tensor(value_states_quant, bits, pack_dim=3)  # [B, nh, T, D]
        B, nh, T, D = codes.shape
        grouped = codes.view(B, nh, T, D // group_size, group_size)
        deq = _dequant_kernel(grouped, value_scale[..., None], value_mn[..., None])
        values.append(deq.view(B, nh, T, D))
    values.append(value_states_full.float())
    return torch.cat(keys, dim=2), torch.cat(values, dim=2)

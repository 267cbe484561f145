"""The `kvm` attention backend driven without a server: a one-layer KV pool, SGLang's request-to-slot
table, and forward batches built by hand, with every K/V the executor is given recorded.

    h = BackendHarness(get_method("kivi"), num_q_heads=8, num_kv_heads=2, head_dim=64)
    reads = h.extend(req=0, prefix=0, q=q, k=k, v=v)       # keys, values attention read
    reads = h.decode(req=0, q=q1, k=k1, v=v1)
    h.share(req=1, from_req=0, length=96)                   # a radix prefix match: shared slots

As in SGLang, an extend writes its new tokens to fresh slots, then attends; a decode step writes
its token, then attends over the request's whole sequence.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from flashinfer_ext.kvm_backend import KVMethodBackend
from kvmethods.torch_executor import attend
from sglang.srt.layers.radix_attention import AttentionType


class OneLayerPool:
    """The token-to-KV pool interface the backend uses, for one layer."""

    def __init__(self, num_slots: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype):
        self.k = torch.zeros(num_slots, num_kv_heads, head_dim, dtype=dtype)
        self.v = torch.zeros(num_slots, num_kv_heads, head_dim, dtype=dtype)

    def get_key_buffer(self, layer_id: int) -> torch.Tensor:
        return self.k

    def get_value_buffer(self, layer_id: int) -> torch.Tensor:
        return self.v

    def set_kv_buffer(self, layer, loc, k: torch.Tensor, v: torch.Tensor) -> None:
        self.k[loc.loc.long()] = k.view(-1, *self.k.shape[1:]).to(self.k.dtype)
        self.v[loc.loc.long()] = v.view(-1, *self.v.shape[1:]).to(self.v.dtype)


class BackendHarness:
    def __init__(self, method, *, num_q_heads: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, num_slots: int = 4096, num_requests: int = 8):
        self.pool = OneLayerPool(num_slots, num_kv_heads, head_dim, dtype)
        self.req_to_token = torch.zeros(num_requests, num_slots, dtype=torch.int32)
        self.lengths = [0] * num_requests
        self.next_slot = 0
        self.reads: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.plans: list = []  # every executor call's plan, in order
        runner = SimpleNamespace(
            device="cpu", req_to_token_pool=SimpleNamespace(req_to_token=self.req_to_token),
            token_to_kv_pool=self.pool, model_config=SimpleNamespace(num_hidden_layers=1),
        )
        self.backend = KVMethodBackend(runner, method, attend=self._attend)
        self.layer = SimpleNamespace(
            layer_id=0, tp_q_head_num=num_q_heads, tp_k_head_num=num_kv_heads, qk_head_dim=head_dim,
            v_head_dim=head_dim, scaling=head_dim**-0.5, is_cross_attention=False, attn_type=AttentionType.DECODER,
        )

    def _attend(self, q, k, v, plan, *, scale):
        self.plans.append(plan)
        self.reads.append((k.clone(), v.clone()))
        return attend(q, k, v, plan, scale=scale)

    def _new_slots(self, req: int, n: int) -> torch.Tensor:
        slots = torch.arange(self.next_slot, self.next_slot + n, dtype=torch.int32)
        self.next_slot += n
        start = self.lengths[req]
        self.req_to_token[req, start : start + n] = slots
        self.lengths[req] += n
        return slots

    def share(self, req: int, from_req: int, length: int) -> None:
        """Request `req` starts with the first `length` slots of `from_req` (a radix match)."""
        self.req_to_token[req, :length] = self.req_to_token[from_req, :length]
        self.lengths[req] = length

    def extend(self, req: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               rid: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """New tokens q [n, Hq, D], k, v [n, Hkv, D] after the request's current (cached) length;
        returns the keys and values attention read [prefix + n, Hkv, D]. `rid`: the request id."""
        prefix, n = self.lengths[req], q.shape[0]
        batch = SimpleNamespace(
            out_cache_loc=self._new_slots(req, n), extend_prefix_lens_cpu=[prefix], extend_seq_lens_cpu=[n],
            req_pool_indices=torch.tensor([req]), rids=[rid or f"req{req}"],
        )
        self.backend.forward_extend(q.reshape(n, -1), k, v, self.layer, batch)
        return self.reads.pop()

    def decode(self, req: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One decode step: q [1, Hq, D], k, v [1, Hkv, D]; returns the K/V attention read."""
        batch = SimpleNamespace(
            out_cache_loc=self._new_slots(req, 1), seq_lens_cpu=torch.tensor([self.lengths[req]]),
            req_pool_indices=torch.tensor([req]), rids=[f"req{req}"],
        )
        self.backend.forward_decode(q.reshape(1, -1), k, v, self.layer, batch)
        return self.reads.pop()

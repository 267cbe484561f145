"""KIVI against SCBench's own KiviCache (tests/reference/scbench_kivi.py): the keys and values
attention reads, step by step, through the whole SCBench lifecycle.

SCBench quantizes the first prefill's KV only (keys but the last T mod residual, values but the
last residual) and appends every later token in full precision, never re-quantizing: decoded tokens
(kept aside and dropped after the turn with the gold history), the next turn (fed one token at a
time) and, in multi-request mode, each question. The `kvm` backend is driven here without a server
(tests/kvm_harness.py) the way SGLang drives it: the next turn or question is one extend over the
cached prefix, matched in whole pages of `group_size` tokens (the page size the server runs KIVI
with), so the partial last page is recomputed into fresh slots.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from kvmethods import get_method
from tests.kvm_harness import BackendHarness
from tests.reference.scbench_kivi import KiviCache, attention_reads

HQ, HKV, D = 8, 2, 64
GROUP = RESIDUAL = 32  # SCBench's group_size and residual_length; the server's page size
DTYPES = (torch.bfloat16, torch.float32)


class Tokens:
    """Deterministic q [n, Hq, D], k, v [n, Hkv, D] for the next n positions of a stream."""

    def __init__(self, dtype: torch.dtype, seed: int):
        self.dtype = dtype
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = torch.randn(n, HQ, D, generator=self.gen)
        k = torch.randn(n, HKV, D, generator=self.gen) * torch.linspace(0.5, 3, D)  # channels of varied range
        v = torch.randn(n, HKV, D, generator=self.gen)
        return q.to(self.dtype), k.to(self.dtype), v.to(self.dtype)


def hf(x: torch.Tensor) -> torch.Tensor:
    return x[None].transpose(1, 2)  # [n, H, D] -> [1, H, n, D]


def from_hf(x: torch.Tensor) -> torch.Tensor:
    return x[0].transpose(0, 1)  # [1, H, n, D] -> [n, H, D]


class Reference:
    """SCBench's KiviCache for one layer, read as kivi_forward reads it."""

    def __init__(self, bits: int):
        self.bits = bits
        self.cache = KiviCache(SimpleNamespace(attn_kwargs={"bits": bits, "group_size": GROUP,
                                                            "residual_length": RESIDUAL}))

    def _update(self, q, k, v, keep: bool):
        return self.cache.update(hf(k), hf(v), 0, {"query_states": hf(q), "update_global_past_kv": keep})

    def prefill(self, q, k, v):
        """The first prefill: attention reads its own K/V in full precision (repeated to Hq)."""
        keys, values = self._update(q, k, v, True)
        return from_hf(keys[:, :: HQ // HKV]), from_hf(values[:, :: HQ // HKV])

    def step(self, q, k, v, keep: bool):
        """One token after the prefill: kept in the cache (`keep`, a turn's prompt) or in the
        temporary cache (decoded tokens, a question over the shared context)."""
        keys, values = attention_reads(*self._update(q, k, v, keep), group_size=GROUP, bits=self.bits)
        return from_hf(keys), from_hf(values)

    def end_turn(self):
        self.cache.clear_temp_kv_cache()


def assert_reads(got, want, dtype):
    """The project's reads are in the pool's dtype; the reference's quantized part is float32 (the
    kernel's), its full-precision part the model's."""
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert torch.equal(g, w.to(dtype))


def make(bits: int, dtype: torch.dtype) -> BackendHarness:
    return BackendHarness(get_method("kivi", bits=bits, group_size=GROUP, residual=RESIDUAL),
                          num_q_heads=HQ, num_kv_heads=HKV, head_dim=D, dtype=dtype)


def page_aligned(n: int) -> int:
    return n - n % GROUP


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("context", [40, 96, 100, 150])
def test_multi_turn_reads_equal_scbench_at_every_step(context, bits, dtype):
    tokens, ref, h = Tokens(dtype, seed=context + bits), Reference(bits), make(bits, dtype)
    turn1 = tokens(context)  # context + question 1: the context's prefill
    assert_reads(h.extend(0, *turn1), ref.prefill(*turn1), dtype)  # full precision
    for _ in range(5):  # the answer; the gold history drops it after the turn
        tok = tokens(1)
        assert_reads(h.decode(0, *tok), ref.step(*tok, keep=False), dtype)
    ref.end_turn()
    quantized = h.decode(0, *tokens(1))[0][:context]  # one more step to see what the context reads
    if context >= RESIDUAL:
        assert not torch.equal(quantized[: page_aligned(context)], turn1[1][: page_aligned(context)])

    # Turn 2 (gold answer + question 2): SGLang extends turn 1's prompt, matched in whole pages;
    # SCBench feeds it one token at a time into its full-precision part. (Shorter than what it finds
    # cached: an extend bringing more new tokens than cached ones is a context's prefill.)
    turn2 = tokens(20)
    h.share(1, from_req=0, length=page_aligned(context))
    recomputed = [torch.cat([a[page_aligned(context):], b]) for a, b in zip(turn1, turn2)]
    got = h.extend(1, *recomputed)
    for j in range(turn2[0].shape[0]):
        want = ref.step(*(x[j : j + 1] for x in turn2), keep=True)
        assert_reads([x[: context + j + 1] for x in got], want, dtype)
    for _ in range(5):
        tok = tokens(1)
        assert_reads(h.decode(1, *tok), ref.step(*tok, keep=False), dtype)
    ref.end_turn()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("context", [96, 150])
def test_multi_request_reads_equal_scbench_at_every_step(context, dtype):
    tokens, ref, h = Tokens(dtype, seed=7 * context), Reference(2), make(2, dtype)
    ctx = tokens(context)
    h.extend(0, *ctx)  # the committed context: the context's prefill
    ref.prefill(*ctx)  # SCBench's _encode
    for req in (1, 2):  # each question forks the context; SCBench keeps it in the temporary cache
        question = tokens(12)
        h.share(req, from_req=0, length=page_aligned(context))
        got = h.extend(req, *(torch.cat([a[page_aligned(context):], b]) for a, b in zip(ctx, question)))
        for j in range(question[0].shape[0]):
            want = ref.step(*(x[j : j + 1] for x in question), keep=False)
            assert_reads([x[: context + j + 1] for x in got], want, dtype)
        for _ in range(4):
            tok = tokens(1)
            assert_reads(h.decode(req, *tok), ref.step(*tok, keep=False), dtype)
        ref.end_turn()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("length", [31, 32, 33, 64, 100])
def test_quantize_kv_reads_what_scbench_reads_after_the_prefill(length, bits, dtype):
    _, k, v = Tokens(dtype, seed=length)(length)
    k[:GROUP, 0, 5] = 0.25  # a constant key group (zero scale: SCBench reads its min)
    v[2, 1, :GROUP] = -1.5  # a constant value group
    ref = Reference(bits)
    ref.prefill(torch.zeros(length, HQ, D, dtype=dtype), k, v)
    state = ref.cache.kv_cache[0]  # what the prefill stored: quantized and full-precision parts
    want = attention_reads(state[:4], state[4:], group_size=GROUP, bits=bits)
    got = get_method("kivi", bits=bits).quantize_kv(k, v)
    assert_reads(got, [from_hf(x) for x in want], dtype)
    key_end, value_end = get_method("kivi").context_split(length)
    assert key_end == (length // RESIDUAL) * RESIDUAL and value_end == max(0, length - RESIDUAL)

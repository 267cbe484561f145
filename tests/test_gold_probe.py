"""The gold-likelihood probe: its request, how its response is read, and that the kvm backend
changes no method state for it."""

from __future__ import annotations

import math

import pytest
import torch

from flashinfer_ext.plugin import PROBE_RID_PREFIX
from kvmethods import get_method
from programs.likelihood import probe_payload, read_probe
from tests.kvm_harness import BackendHarness


def test_probe_payload_asks_from_the_prompts_last_token():
    payload = probe_payload([1, 2, 3, 4], [7, 8], "ns")
    assert payload["input_ids"] == [1, 2, 3, 4, 7, 8]
    assert payload["logprob_start_len"] == 3 and payload["top_logprobs_num"] == 1
    assert payload["sampling_params"]["max_new_tokens"] == 0
    assert payload["rid"].startswith(PROBE_RID_PREFIX) and payload["extra_key"] == "ns"
    assert "extra_key" not in probe_payload([1], [2], None)


def test_read_probe_scores_the_gold_tokens():
    meta = {
        "input_token_logprobs": [[None, 4, None], [math.log(0.5), 7, None], [math.log(0.25), 8, None]],
        "input_top_logprobs": [None, [[math.log(0.5), 7, None]], [[math.log(0.6), 9, None]]],
        "cached_tokens": 3,
    }
    got = read_probe(meta, [7, 8])
    assert got.nll == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert got.token_acc == 0.5 and got.tokens == 2 and got.cached_tokens == 3
    with pytest.raises(ValueError, match="does not score gold token"):
        read_probe(meta, [7, 9])


def _visible(h: BackendHarness, req: int) -> torch.Tensor:
    slots = h.req_to_token[req, : h.lengths[req]]
    return h.backend.state.visibility(0, slots)


@pytest.mark.parametrize("probe", [True, False])
def test_a_probe_changes_no_method_state(probe):
    """A probe longer than the prompt it extends would look like a context prefill; marked as a
    probe it compresses nothing (unmarked, it would: the test can fail)."""
    gen = torch.Generator().manual_seed(0)
    h = BackendHarness(get_method("snapkv", budget=16, window=4), num_q_heads=4, num_kv_heads=2, head_dim=8)

    def tokens(n):
        return torch.randn(n, 4, 8, generator=gen), torch.randn(n, 2, 8, generator=gen), torch.randn(n, 2, 8, generator=gen)

    h.extend(0, *tokens(40))  # the context's prefill: compressed to 16 keys per head
    before = _visible(h, 0).clone()
    assert int(before.sum(dim=1).max()) == 16
    h.share(1, from_req=0, length=40)
    h.extend(1, *tokens(60), rid=(PROBE_RID_PREFIX + "x") if probe else "a-normal-request")
    assert torch.equal(_visible(h, 0), before)  # the shared context keeps its state either way
    new = _visible(h, 1)[:, 40:]
    assert bool(new.all()) == probe  # unmarked, the 100-token extend would have compressed again

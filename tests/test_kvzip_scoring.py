"""KVzip's scoring pass through the `kvm` backend (no server): the request ids, the chunked
reconstruction inputs, the kept sets (equal to KVzip's own selection on the same tensors), and the
requests that must not score (gold probes, plain requests) or leave tokens in the radix tree."""

from array import array

import pytest
import torch

from flashinfer_ext.context_scoring import SCORING_RID_PREFIX, ScoringChunk, parse_scoring_rid
from flashinfer_ext.plugin import PROBE_RID_PREFIX, SKIP_INSERT_RID_PREFIXES, keep_probes_out_of_the_radix_tree
from kvmethods.kvzip import KVzip
from programs.context_scoring import PLAIN_POSTFIX, assistant_opening, scoring_requests
from tests.kvm_harness import BackendHarness
from tests.reference.kvzip_score import KVScore

HQ, HKV, D = 8, 2, 16


def test_rid_round_trip_and_errors():
    chunk = ScoringChunk("ab12", 4, 4, 34, 60, False)
    assert chunk.rid().startswith(SCORING_RID_PREFIX) and parse_scoring_rid(chunk.rid()) == chunk
    assert parse_scoring_rid("req1") is None and parse_scoring_rid(None) is None
    assert parse_scoring_rid(PROBE_RID_PREFIX + "x") is None
    with pytest.raises(ValueError, match="malformed"):
        parse_scoring_rid(SCORING_RID_PREFIX + "ab.1.2")
    with pytest.raises(ValueError, match="sink <= start"):
        parse_scoring_rid(SCORING_RID_PREFIX + "ab.5.4.34.60.0")


def test_reconstruction_inputs_follow_kvzip_self_task():
    """KVzip's `self_task`: chunk 0 = prompt + postfix + chunk; chunk i = next prompt + the previous
    chunk's last tokens + postfix + chunk; every request starts with the whole context."""
    ctx = list(range(100, 130))  # 3 sink tokens, then 27 context tokens
    first, nxt, post = [1, 2], [3], [9, 9]
    reqs = scoring_requests(ctx, 3, (first, nxt), post, chunk_size=10, prev_postfix_size=4, session="s")
    assert [(c.start, c.end, c.last) for c, _ in reqs] == [(3, 13, False), (13, 23, False), (23, 30, True)]
    assert reqs[0][1] == ctx + first + post + ctx[3:13]
    assert reqs[1][1] == ctx + nxt + ctx[9:13] + post + ctx[13:23]
    assert reqs[2][1] == ctx + nxt + ctx[19:23] + post + ctx[23:30]
    assert all(c.context_len == 30 and c.sink == 3 for c, _ in reqs)
    assert assistant_opening(None) == PLAIN_POSTFIX


def test_assistant_opening_from_the_chat_template(tiny_tokenizer):
    from runtime.chat_template import chat_format

    assert assistant_opening(chat_format(tiny_tokenizer)) == "<|im_end|>\n<|im_start|>assistant\n"


def score_through_backend(method, ratio_chunks, sink=4, ctx=60, prompt=5, seed=0, probe_first=False):
    """A context prefill (request 0), then KVzip's reconstruction chunks as requests sharing its
    slots; returns (the context's visibility [Hkv, ctx], KVzip's reference scores [1, Hkv, ctx-sink])."""
    gen = torch.Generator().manual_seed(seed)
    h = BackendHarness(method, num_q_heads=HQ, num_kv_heads=HKV, head_dim=D)
    rnd = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    h.extend(0, rnd(ctx, HQ, D), rnd(ctx, HKV, D), rnd(ctx, HKV, D))
    ref = KVScore(1, HKV, torch.float32, sink=sink)
    ref.init_score()
    bounds = list(range(sink, ctx, ratio_chunks)) + [ctx]
    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        req = i + 1
        h.share(req, 0, ctx)
        rows = prompt + end - start
        q, k, v = rnd(rows, HQ, D), rnd(rows, HKV, D), rnd(rows, HKV, D)
        chunk = ScoringChunk("s1", sink, start, end, ctx, end == ctx)
        if probe_first:  # the same request as a gold probe changes nothing
            h.share(7, 0, ctx)
            h.extend(7, q, k, v, rid=PROBE_RID_PREFIX + "p")
        keys, _ = h.extend(req, q, k, v, rid=chunk.rid())
        ref.start_idx, ref.end_idx = start, end
        ref._get_score(q.transpose(0, 1)[None], keys.transpose(0, 1)[None], 0)
    slots = h.req_to_token[0, :ctx].long()
    return h.backend.state.visibility(0, slots), torch.stack(ref.score)[:, 0], h


@pytest.mark.parametrize("level", ["pair", "pair-uniform"])
@pytest.mark.parametrize("chunk", [20, 56])
def test_backend_keeps_kvzips_selection(level, chunk):
    method = KVzip(ratio=0.3, level=level, chunk_size=chunk)
    visible, scores, _ = score_through_backend(method, chunk)
    ref = KVScore(1, HKV, torch.float32)
    threshold = ref._threshold_uniform if level == "pair-uniform" else ref._threshold
    expected = threshold([scores[0][None]], 0.3)[0][0, 0]  # one layer, batch 1
    assert visible[:, :4].all()  # the sink (chat header, instruction) is never evicted
    assert torch.equal(visible[:, 4:], expected)
    assert visible[:, 4:].sum() < 0.35 * 2 * 56


def test_gold_probe_never_scores_and_budget_bounds_the_kept_keys():
    visible, scores, h = score_through_backend(KVzip(budget=10, level="pair-uniform"), 20, probe_first=True)
    assert (visible[:, 4:].sum(-1) == 10).all()
    # a plain request over the context changes nothing either
    h.share(6, 0, 60)
    h.extend(6, torch.randn(70, HQ, D), torch.randn(70, HKV, D), torch.randn(70, HKV, D), rid="plain")
    assert torch.equal(h.backend.state.visibility(0, h.req_to_token[0, :60].long()), visible)


def test_context_prefill_alone_keeps_everything():
    h = BackendHarness(KVzip(budget=10), num_q_heads=HQ, num_kv_heads=HKV, head_dim=D)
    h.extend(0, torch.randn(60, HQ, D), torch.randn(60, HKV, D), torch.randn(60, HKV, D))
    assert h.backend.state.visibility(0, h.req_to_token[0, :60].long()).all()


def test_scoring_and_probe_requests_skip_the_radix_tree():
    from sglang.srt.managers.schedule_batch import Req
    from sglang.srt.sampling.sampling_params import SamplingParams

    keep_probes_out_of_the_radix_tree()
    assert SKIP_INSERT_RID_PREFIXES == (PROBE_RID_PREFIX, SCORING_RID_PREFIX)
    make = lambda rid: Req(rid, "", array("i", [1, 2]), SamplingParams(max_new_tokens=0))  # noqa: E731
    assert make(ScoringChunk("a", 0, 0, 1, 2, True).rid()).skip_radix_cache_insert
    assert make(PROBE_RID_PREFIX + "x").skip_radix_cache_insert
    assert not getattr(make("plain"), "skip_radix_cache_insert", False)


def test_a_scoring_request_found_cached_scores_nothing():
    """Its reconstruction rows already cached (not what the client sends): no scores, no change."""
    h = BackendHarness(KVzip(budget=10), num_q_heads=HQ, num_kv_heads=HKV, head_dim=D)
    h.extend(0, torch.randn(60, HQ, D), torch.randn(60, HKV, D), torch.randn(60, HKV, D))
    h.extend(0, torch.randn(1, HQ, D), torch.randn(1, HKV, D), torch.randn(1, HKV, D),
             rid=ScoringChunk("s", 0, 0, 30, 30, True).rid())  # context 30 of 60: rows beyond the extend
    assert h.backend.state.visibility(0, h.req_to_token[0, :61].long()).all()
    assert not h.backend.context_scores.sessions


@pytest.mark.parametrize("style", ["official", "fixed"])
@pytest.mark.parametrize("chat", [True, False])
def test_first_turn_starts_with_its_context_part(tiny_tokenizer, style, chat):
    """Multi-turn KVzip commits `first_turn_context()` and scores it before question 1: every
    task's first turn must start with it and add only question 1."""
    from data.generators import token_counter
    from programs.prompts import session_prompts
    from programs.registry import all_tasks
    from runtime.chat_template import chat_format

    fmt = chat_format(tiny_tokenizer) if chat else None
    checked = 0
    for task in all_tasks():
        try:
            sample = task.generator(token_counter(tiny_tokenizer), num_samples=1, context_tokens=2500, num_turns=2, seed=1)[0]
        except (TypeError, ValueError):  # no generator, or a context too small for the task
            continue
        text = session_prompts(task, sample, fmt, style)
        context, first = text.first_turn_context(), text.first_turn()
        assert first.startswith(context) and sample.context[:200] in context, task.name
        assert sample.turns[0].question.strip()[:20] in first[len(context):] or task.name in ("summary", "summary_with_needles"), task.name
        checked += 1
    assert checked >= 5  # the tasks with an offline generator

"""KVzip and DuoAttention in a real SGLang server on the tiny model: KVzip's scoring pass leaves
none of its tokens in the radix cache and keeps the budget; `bench --methods kvzip,duoattention`
runs both modes."""

from __future__ import annotations

import json
import urllib.request

import pytest

from benchmarks.serving import flush_cache
from flashinfer_ext.plugin import STATS_DETAIL_ENV
from kvmethods.kvzip import KVzip
from programs.context_scoring import ContextScorer
from tests.test_cli import cli, point_dirs
from tests.test_kvm_server import generate, kvm_server, stats_by_rid, text

pytestmark = pytest.mark.server


def generate_ids(url: str, input_ids: list[int], **extra) -> dict:
    """A plain request (its tokens enter the radix tree) for these token ids."""
    body = {"input_ids": input_ids, "sampling_params": {"max_new_tokens": 1, "temperature": 0}, **extra}
    request = urllib.request.Request(url + "/generate", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_kvzip_scoring_pass_leaves_no_tokens_and_keeps_the_budget(tiny_model_path, tiny_tokenizer, tmp_path):
    budget, namespace = 48, "kvzip-session"
    server, stats_path = kvm_server(tiny_model_path, tmp_path, "kvzip", f"budget={budget}", "level=pair-uniform",
                                    "chunk_size=150")
    context = text(400, 3)
    ids = tiny_tokenizer.encode(context)
    with server:
        assert server.options.env[STATS_DETAIL_ENV] == "1"
        flush_cache(server.url)
        generate(server.url, context, 1, extra_key=namespace)  # commit the context
        method = KVzip(budget=budget, level="pair-uniform", chunk_size=150)
        scorer = ContextScorer(server.url, tiny_tokenizer, method, None, namespace, sample_context=context[40:])
        sent, send = [], scorer._send
        scorer._send = lambda chunk, input_ids: (sent.append(input_ids), send(chunk, input_ids))[1]
        scorer(context)
        assert len(scorer.chunks) > 1 and scorer.chunks[-1].last  # chunked like KVzip
        sink = scorer.chunks[0].sink
        assert 0 < sink < 20
        # Each scoring input again, as a plain request: only the context (and the token generated
        # after it) is found cached, so the scoring pass added no branch to the session's radix tree.
        assert all(s[: len(ids)] == ids and len(s) > len(ids) + 150 for s in sent)
        # (Once one is sent, the others share its prompt with it: they must not find their chunk.)
        for i, scoring_input in enumerate(reversed(sent)):
            cached = generate_ids(server.url, scoring_input, extra_key=namespace)["meta_info"]["cached_tokens"]
            if i == 0:
                assert len(ids) <= cached <= len(ids) + 1, (cached, len(ids))
            assert cached < len(scoring_input) - 50, (i, cached, len(scoring_input))
        question = generate(server.url, context + " find the key", 2, extra_key=namespace)
        assert question["meta_info"]["cached_tokens"] >= len(ids) - 1
    row = stats_by_rid(stats_path)[question["meta_info"]["id"]]
    visible_context = [p for p in row["visible"] if p < len(ids)]
    assert len(visible_context) == sink + budget  # the sink and the top `budget` per head
    assert set(range(sink)) <= set(visible_context)
    assert row["kept_kv"] == pytest.approx((sink + budget + row["seq_len"] - len(ids)) / row["seq_len"], abs=0.02)
    rids = set(stats_by_rid(stats_path))
    assert not [r for r in rids if r.startswith("scbench-context-score-")]  # the pass decodes nothing


def test_bench_runs_kvzip_and_duoattention_in_both_modes(tiny_model_path, tmp_path):
    done = cli(
        "bench", "--model", str(tiny_model_path), "--samples", "1", "--turns", "2", "--context-tokens", "400",
        "--methods", "kvzip,duoattention", "--method-arg", "budget=64", "--method-arg", "duoattention.sink=16", "--out", str(tmp_path), timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for d in point_dirs(tmp_path) for line in (d / "samples.jsonl").read_text().splitlines()]
    assert not [r for r in records if r.get("error")]
    assert {(r["method"], r["mode"]) for r in records} == {
        (m, mode) for m in ("kvzip", "duoattention") for mode in ("multi-turn", "multi-request")
    }
    for r in records:
        if r["method"] == "kvzip":  # ~64 of ~400 context keys per head, plus the turn's own tokens
            assert 0.1 < r["kept_kv"] < 0.5, r
        else:  # half the heads keep all, half keep 64
            assert 0.4 < r["kept_kv"] < 0.8, r
        # the scoring pass's tokens never entered the cache: each turn finds only its session's text
        assert r["recomputed_tokens"] in (0, None) and r["gold_nll"] is not None, r

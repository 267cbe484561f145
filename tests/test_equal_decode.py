"""The kv_reuse benchmark's equal decode work: every answer decodes the same number of tokens on
both servers, whatever the answers are."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.kv_reuse import GOLD, TASK, decode_length, decode_tokens_arg
from benchmarks.recording import Recorder, fixed_decode
from data.sample import Sample, Turn


def test_fixed_decode_sets_the_length_and_ignores_eos_and_stops():
    payload = {"text": "x", "sampling_params": {"max_new_tokens": 150, "temperature": 0.0, "stop": ["\n"],
                                                "stop_token_ids": [2]}}
    fixed_decode(7)(payload)
    assert payload["sampling_params"] == {"max_new_tokens": 7, "temperature": 0.0, "ignore_eos": True}


def test_fixed_decode_leaves_prefill_only_requests_alone():
    payload = {"text": "context", "sampling_params": {"max_new_tokens": 0}}
    fixed_decode(7)(payload)
    assert payload == {"text": "context", "sampling_params": {"max_new_tokens": 0}}


def test_recorder_sends_and_records_the_rewritten_payload(monkeypatch):
    import sglang.lang.backend.runtime_endpoint as endpoint

    sent = []

    class Response:
        def json(self):
            return {"text": "ok", "meta_info": {"completion_tokens": 3}}

    monkeypatch.setattr(endpoint, "http_request", lambda url, json=None, *a, **k: sent.append(json) or Response())
    original = {"text": "q", "sampling_params": {"max_new_tokens": 150}}
    with Recorder(rewrite=fixed_decode(3)) as recorder:
        endpoint.http_request("http://127.0.0.1:1/generate", json=original)
        endpoint.http_request("http://127.0.0.1:1/flush_cache", json={"sampling_params": {"max_new_tokens": 9}})
    assert sent[0]["sampling_params"] == {"max_new_tokens": 3, "ignore_eos": True}
    assert original["sampling_params"] == {"max_new_tokens": 150}  # the caller's payload is untouched
    assert sent[1] == {"sampling_params": {"max_new_tokens": 9}}  # only /generate is rewritten
    assert recorder.generate_calls()[0].payload == sent[0]


def test_decode_tokens_option():
    assert decode_tokens_arg("gold") == GOLD and decode_tokens_arg("task") == TASK and decode_tokens_arg("32") == 32
    for bad in ("0", "-1", "x", "1e3", "99999"):
        with pytest.raises(argparse.ArgumentTypeError, match="gold, task or an integer"):
            decode_tokens_arg(bad)


def test_gold_decode_length_is_the_longest_gold_answer(tiny_tokenizer):
    sample = Sample(id="s", context="c", turns=(Turn("q1", "ab"), Turn("q2", "a much longer gold answer here")))
    longest = len(tiny_tokenizer.encode("a much longer gold answer here", add_special_tokens=False))
    assert decode_length(GOLD, tiny_tokenizer, sample) == longest
    assert decode_length(TASK, tiny_tokenizer, sample) is None
    assert decode_length(5, tiny_tokenizer, sample) == 5


@pytest.mark.server
@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
def test_every_answer_decodes_exactly_the_fixed_length(connection, mode):
    from data.generators import generate_kv, token_counter
    from programs import get_program

    (sample,) = generate_kv(token_counter(connection.tokenizer), num_samples=1, context_tokens=400, num_turns=2, seed=3)
    connection.backend.flush_cache()
    with Recorder(rewrite=fixed_decode(9)) as recorder:
        state = get_program("kv", mode).run(backend=connection.backend, sample=sample, chat=connection.chat)
    assert state.error() is None
    answering = [c for c in recorder.generate_calls() if c.payload["sampling_params"]["max_new_tokens"] != 0]
    assert len(answering) == 2
    assert [c.meta["completion_tokens"] for c in answering] == [9, 9]
    assert [r["completion_tokens"] for r in state.ret_value] == [9, 9]


@pytest.mark.parametrize("args, expected", [
    (["--context-tokens", "8000"], "the last multi-turn prompt and its answer take"),
    (["--context-tokens", "30"], "need at least 5"),
])
def test_a_session_that_cannot_fit_is_refused_before_any_server_starts(tmp_path, args, expected):
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "benchmarks.kv_reuse", *args, "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    last = result.stderr.strip().splitlines()[-1]  # after the embedded model's first-use conversion, if any
    assert result.returncode == 2, result.stderr[-2000:]
    assert last.startswith("error: ") and expected in last and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not out.exists()

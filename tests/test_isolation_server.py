"""Sessions are isolated from each other in the radix cache: a session under `--parallel N`
produces exactly what it produces alone, and never finds another session's (compressed) KV."""

from __future__ import annotations

import json

import pytest
import sglang as sgl

from tests.conftest import same_reuse
from tests.test_cli import cli, point_dirs

pytestmark = pytest.mark.server


@sgl.function
def _prefix_and_answer(s, text):
    s += text
    s += sgl.gen("answer", max_tokens=2, temperature=0.0)


def _cached(backend, text) -> int:
    state = _prefix_and_answer.run(text=text, backend=backend)
    return state.get_meta_info("answer")["cached_tokens"]


def test_a_namespace_only_reuses_its_own_prefix(connection):
    text = "A shared instruction that two sessions would otherwise share. " * 20
    first = connection.backend.for_session("session-a")
    assert _cached(first, text) == 0
    assert _cached(first, text) > 100  # its own turns reuse its own context
    assert _cached(connection.backend.for_session("session-b"), text) == 0  # another session does not
    assert _cached(connection.backend, text) == 0  # nor does a request without a namespace


def _bench(model, out, parallel: int):
    done = cli("bench", "--model", str(model), "--samples", "4", "--turns", "2", "--context-tokens", "400",
               "--methods", "snapkv", "--method-arg", "budget=96", "--parallel", str(parallel), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    (point,) = point_dirs(out)
    records = [json.loads(line) for line in (point / "samples.jsonl").read_text().splitlines()]
    assert records and not [r for r in records if r.get("error")]
    return {
        (r["task"], r["mode"], r["sample_index"], r["turn"]):
            (r["prediction"], r["kept_kv"], r["prompt_tokens"], r["cached_tokens"])
        for r in records
    }


def _fork_race_free(results: dict) -> tuple[dict, dict]:
    """(results without multi-request cached tokens, those cached tokens). A multi-request
    session's questions are concurrent forks of its own context: whether one question's prefill
    finds the shared start of another's already cached depends on which reaches the scheduler
    first, inside the session, alone or not. Everything else must be equal."""
    exact = {k: v if k[1] != "multi-request" else v[:3] for k, v in results.items()}
    forks = {k: v[3] for k, v in results.items() if k[1] == "multi-request"}
    return exact, forks


@pytest.fixture(scope="module")
def parallel_runs(tiny_model_path, tmp_path_factory):
    """The same sweep alone, under --parallel 4, and under --parallel 4 again."""
    out = tmp_path_factory.mktemp("parallel")
    return {name: _bench(tiny_model_path, out / name, parallel=parallel)
            for name, parallel in (("alone", 1), ("together", 4), ("again", 4))}


def _assert_equal_up_to_fork_races(a: dict, b: dict) -> None:
    (a_exact, a_forks), (b_exact, b_forks) = _fork_race_free(a), _fork_race_free(b)
    assert b_exact == a_exact
    # The questions reuse the whole committed context either way; at most the questions' common
    # words (a few tokens of the question template) come from a sibling fork, or not.
    assert a_forks.keys() == b_forks.keys()
    for key, cached in b_forks.items():
        assert same_reuse("multi-request", cached, a_forks[key]), (key, cached, a_forks[key])
        assert cached >= 0.8 * b[key][2]  # the committed context (400 of ~550 tokens) was reused


def test_parallel_sessions_equal_sessions_alone(parallel_runs):
    together = parallel_runs["together"]
    _assert_equal_up_to_fork_races(parallel_runs["alone"], together)
    # multi-turn turn 1 and the multi-request commit start from an empty namespace: no other
    # session's instruction or chat header is reused
    assert all(cached == 0 for (task, mode, _, turn), (*_, cached) in together.items()
               if mode == "multi-turn" and turn == 0)


def test_the_same_parallel_sweep_twice_gives_the_same_predictions(parallel_runs):
    """SGLang's --enable-deterministic-inference does not run on the CPU engine (it accepts only
    GPU attention backends and batch-invariant Triton kernels); greedy decoding over per-session
    radix namespaces is what makes a rerun repeat itself here."""
    _assert_equal_up_to_fork_races(parallel_runs["together"], parallel_runs["again"])


class _EvictingEndpoint:
    """Wraps a session's endpoint: after the context is committed, the radix cache is emptied, as
    if the server had evicted the context under memory pressure before the questions came."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def commit_lazy_operations(self, s):
        self.inner.commit_lazy_operations(s)
        self.inner.flush_cache()


def test_a_turn_that_prefills_evicted_context_again_is_recorded(connection, tiny_tokenizer):
    from dataclasses import replace

    from bench.runner import BenchSpec, run_session
    from data.generators import generate_kv, token_counter
    from programs import get_task

    count = token_counter(tiny_tokenizer)
    sample = generate_kv(count, num_samples=1, context_tokens=400, num_turns=2, seed=3)[0]
    spec = BenchSpec(tasks=("kv",), modes=("multi-request",), flush_between_sessions=True)
    normal = run_session(connection, get_task("kv"), sample, "multi-request", spec, count)
    assert normal.error is None and [r.recomputed_tokens for r in normal.records] == [0, 0]

    evicting = replace(connection, backend=_Wrapper(connection.backend))
    evicted = run_session(evicting, get_task("kv"), sample, "multi-request", spec, count)
    assert evicted.error is None
    first = evicted.records[0]  # the first question re-prefills the whole committed context
    assert first.recomputed_tokens >= first.context_tokens


class _Wrapper:
    """A connection's backend whose sessions evict their context after committing it."""

    def __init__(self, backend):
        self.backend = backend

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def for_session(self, namespace):
        return _EvictingEndpoint(self.backend.for_session(namespace))

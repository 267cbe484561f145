"""The `kvm` backend inside a real SGLang server on the tiny model: exactness against SGLang's own
torch-native backend, radix-shared compression, and `bench` with every method in both modes."""

from __future__ import annotations

import json
import urllib.request

import pytest

from benchmarks.serving import flush_cache
from flashinfer_ext.plugin import STATS_DETAIL_ENV
from flashinfer_ext.server_settings import server_settings
from kvmethods import get_method, method_names
from kvmethods.registry import parse_methods
from runtime.server import ManagedServer, ServerOptions
from tests.test_cli import cli, point_dirs

pytestmark = pytest.mark.server

WORDS = "the of and to in is was for on that with as by at from key value json data find pass number".split()


def text(n_words: int, seed: int) -> str:
    import random

    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def generate(url: str, prompt: str, max_new_tokens: int = 4, **extra) -> dict:
    body = {"text": prompt, "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0}, **extra}
    request = urllib.request.Request(
        url + "/generate", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def kvm_server(model_path, work, spec: str, *args: str, force_plugin: bool = False, dtype: str | None = None):
    (method,) = parse_methods((spec,), args)
    stats = work / "kept.jsonl"
    # `full` normally runs on SGLang's own backend; force_plugin runs it through `kvm`.
    settings = server_settings(method, "cpu", str(stats), kvm_always=force_plugin)
    options = ServerOptions(
        model_path=str(model_path), device="cpu", max_total_tokens=8192,
        attention_backend=settings.attention_backend, extra_args=settings.extra_args,
        env={**settings.env, STATS_DETAIL_ENV: "1"},
    )
    if dtype:
        options.extra_args += ["--dtype", dtype]
    return ManagedServer(options, work / "server.log", work / "cache"), stats


def stats_by_rid(path) -> dict[str, dict]:
    return {row["rid"]: row for row in map(json.loads, path.read_text().splitlines())}


def test_full_through_the_plugin_matches_sglangs_torch_native_backend(tiny_model_path, tmp_path):
    # float32, so a difference means different attention, not bf16 rounding of the same attention.
    prompts = [text(300, 1), text(40, 2)]
    results = []
    for name, force_plugin in (("kvm", True), ("torch_native", False)):
        server, _ = kvm_server(tiny_model_path, tmp_path / name, "full", force_plugin=force_plugin, dtype="float32")
        with server:
            assert ("kvm" in server.options.command(0)) == force_plugin
            results.append([generate(server.url, p, 8, return_logprob=True, logprob_start_len=0) for p in prompts])
    ours, theirs = results
    for a, b in zip(ours, theirs):
        for key in ("input_token_logprobs", "output_token_logprobs"):
            la, lb = a["meta_info"][key], b["meta_info"][key]
            assert [t[1] for t in la] == [t[1] for t in lb]  # same tokens (greedy decode agrees)
            diffs = [abs(x[0] - y[0]) for x, y in zip(la, lb) if x[0] is not None and y[0] is not None]
            assert len(diffs) >= len(la) - 1 and max(diffs) < 1e-4, (key, max(diffs))


def test_snapkv_compression_is_shared_by_forks_and_turns_and_reset_on_rewrite(tiny_model_path, tmp_path):
    budget = 64
    server, stats_path = kvm_server(tiny_model_path, tmp_path, "snapkv", f"budget={budget}", "window=8")
    context = text(400, 3)
    with server:
        first = generate(server.url, context, 2)  # cold prefill: compressed once, query-agnostic
        prompt_len = first["meta_info"]["prompt_tokens"]
        forks = [generate(server.url, context + " " + text(20, seed), 2) for seed in (4, 5)]
        turn3 = generate(server.url, context + " " + text(20, 4) + " " + text(30, 6), 2)
        flush_cache(server.url)
        short = generate(server.url, text(30, 7), 2)  # reuses freed slots; shorter than the budget
    stats = stats_by_rid(stats_path)

    def visible_in_context(response) -> list[int]:
        assert response["meta_info"]["cached_tokens"] >= prompt_len - 1 or response is first
        return [p for p in stats[response["meta_info"]["id"]]["visible"] if p < prompt_len - 1]

    kept = visible_in_context(first)
    assert len(kept) <= budget and prompt_len > 4 * budget
    assert visible_in_context(forks[0]) == kept == visible_in_context(forks[1])
    assert visible_in_context(turn3) == kept  # still compressed two extensions later
    for response in forks + [turn3]:  # tokens appended after the compression stay visible
        row = stats[response["meta_info"]["id"]]
        assert set(range(prompt_len, row["seq_len"])) <= set(row["visible"])
    assert stats[short["meta_info"]["id"]]["kept_kv"] == 1.0  # no stale invisibility on rewritten slots


# Every registered method (the baseline first) and one composition.
ALL_METHODS = ",".join(["full", *(m for m in method_names() if m != "full"), "minference+snapkv"])


@pytest.mark.timeout(2400)  # every registered method, one managed server each
def test_bench_runs_every_method_in_both_modes(tiny_model_path, tmp_path):
    done = cli(
        "bench", "--model", str(tiny_model_path), "--samples", "1", "--turns", "2", "--context-tokens", "700",
        "--methods", ALL_METHODS, "--method-arg", "budget=256", "--method-arg", "minference.vertical_size=64",
        "--method-arg", "quest.dense_layers=0", "--method-arg", "duoattention.budget=128",  # half its heads keep all
        "--out", str(tmp_path), timeout=2400,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    methods = ALL_METHODS.split(",")
    dirs = point_dirs(tmp_path)
    assert [d.name for d in dirs] == methods
    records, headers = [], {}
    for d in dirs:
        headers[d.name] = json.loads((d / "header.json").read_text())
        records += [json.loads(l) for l in (d / "samples.jsonl").read_text().splitlines()]
        assert (d / "official" / "prediction_scbench_kv_multi_turn.jsonl").exists()
    assert all(headers[m]["method"]["method"] == m and headers[m]["finished"] for m in methods)
    assert not [r for r in records if r.get("error")]
    assert {(r["method"], r["mode"]) for r in records} == {(m, mode) for m in methods for mode in ("multi-turn", "multi-request")}
    kept = {}
    for r in records:
        kept.setdefault(r["method"], []).append(r["kept_kv"])
    assert kept["full"] == [None] * 4  # SGLang's own backend: nothing to report
    for m in methods[1:]:
        if get_method(m).phases & {"compress", "decode"}:  # dropping and retrieval hide keys
            assert all(0 < k < 0.7 for k in kept[m]), (m, kept[m])
        else:
            assert kept[m] == [1.0] * 4, m  # prefill sparsity and quantization drop nothing
    for r in records:  # per layer (2), the kept share of 64 position ranges
        assert r["kept_map"] is None if r["method"] == "full" else len(r["kept_map"]) == 2
    snap_map = next(r["kept_map"] for r in records if r["method"] == "snapkv")
    assert min(snap_map[0]) < 1.0 and snap_map[0][-1] == 1.0  # dropped in the context, not at the end
    (row,) = [json.loads(l) for l in (dirs[0] / "contexts" / "kv.jsonl").read_text().splitlines()]
    assert row["id"] == records[0]["sample_id"] and len(row["multi_turns"]) == 2
    for m in methods[1:]:
        assert "--attention-backend kvm" in " ".join(headers[m]["server"]["command"])
    assert "kvm" not in headers["full"]["server"]["command"]
    assert "kept KV" in done.stdout
    # The gold answer's likelihood was measured under every method, through the cached KV
    # (a probe that found the context evicted would leave it None and say so).
    assert all(r["gold_nll"] is not None and r["gold_tokens"] > 0 for r in records), \
        [(r["method"], r["turn"]) for r in records if r["gold_nll"] is None]
    assert "gold probe" not in done.stdout + done.stderr

"""Fast checks of the server benchmarks (no server is started): --help, and the pure helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

SCRIPTS = ("kv_reuse", "harness_overhead", "length_scaling", "kvpress_peer")


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "--out" in done.stdout


def test_shared_helpers_import_neither_torch_nor_sglang():
    """--help and the pure helpers stay fast: whatever needs a server is imported where it is used."""
    code = ("import sys, benchmarks.measure, benchmarks.options, benchmarks.recording, benchmarks.samples, "
            "benchmarks.serving; print([m for m in ('torch', 'sglang', 'transformers') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr


def test_worker_is_standalone():
    """The kvpress worker runs in another venv: it must not import this project."""
    source = (REPO / "benchmarks" / "kvpress_worker.py").read_text()
    for module in ("benchmarks", "programs", "runtime", "bench", "kvmethods", "sglang"):
        assert f"from {module}" not in source and f"import {module}" not in source


def test_expected_prefill_multi_turn():
    from benchmarks.measure import expected_prefill

    # turn 1 holds the context (1000) + question; each later turn adds answer + question (50 each)
    assert expected_prefill("multi-turn", [1030, 1080, 1130]) == 1130
    assert expected_prefill("multi-turn", [500]) == 500


def test_expected_prefill_multi_request():
    from benchmarks.measure import expected_prefill

    assert expected_prefill("multi-request", [1030, 1031, 1029], context_tokens=1000) == 1000 + 30 + 31 + 29
    assert expected_prefill("multi-request", [], context_tokens=1000) == 1000
    with pytest.raises(ValueError):
        expected_prefill("multi-request", [10])
    with pytest.raises(ValueError):
        expected_prefill("other", [10])


def test_computed_prefill():
    from benchmarks.measure import computed_prefill

    metas = [{"prompt_tokens": 1000, "cached_tokens": 0}, {"prompt_tokens": 1000, "cached_tokens": 999},
             {"prompt_tokens": 1040, "cached_tokens": 1000}, {"prompt_tokens": 7}]
    assert computed_prefill(metas) == 1000 + 1 + 40 + 7


def test_ratios_and_targets():
    from benchmarks.measure import fmt_pct, fmt_ratio, ratio, target_line, verdict, within

    assert ratio(6, 2) == 3 and ratio(1, 0) is None and ratio(None, 2) is None
    assert fmt_ratio(3.0) == "3.00x" and fmt_ratio(None) == "-" and fmt_ratio(1.23456, 3) == "1.235x"
    assert fmt_pct(0.123) == "12.3%" and fmt_pct(None) == "-"
    assert verdict(True) == "MET" and verdict(False) == "NOT MET"
    assert target_line("x >= 3x", "2.00x", False) == "Target: x >= 3x: 2.00x -> NOT MET"
    assert within(104, 100, 0.05) and within(95, 100, 0.05) and not within(106, 100, 0.05)


def test_table():
    from benchmarks.measure import table

    out = table(["mode", "wall s"], [("multi-turn", "1.5"), ("mr", None)]).splitlines()
    assert out[0] == "mode       | wall s"
    assert out[2] == "multi-turn |    1.5"
    assert out[3].endswith("|      -")


def test_waves_group_overlapping_calls():
    from benchmarks.recording import Call, waves

    calls = [Call("u/generate", {}, 0.0, 1.0), Call("u/generate", {}, 1.1, 1.2),
             Call("u/generate", {}, 1.3, 5.0), Call("u/generate", {}, 1.31, 4.0), Call("u/generate", {}, 1.32, 6.0),
             Call("u/generate", {}, 6.5, 7.0)]
    assert [len(w) for w in waves(list(reversed(calls)))] == [1, 1, 3, 1]


def test_prefill_only_copies():
    from benchmarks.serving import prefill_only

    payload = {"text": "x", "sampling_params": {"max_new_tokens": 150, "temperature": 0.0}}
    out = prefill_only(payload)
    assert out == {"text": "x", "sampling_params": {"max_new_tokens": 0, "temperature": 0.0}}
    assert payload["sampling_params"]["max_new_tokens"] == 150


def test_peak_rss_sees_an_allocation():
    from benchmarks.measure import PeakRss, group_pids, rss_bytes

    me = os.getpid()
    assert me in group_pids(os.getpgid(me))
    assert rss_bytes([me]) > 10 * 2**20
    with PeakRss(lambda: [me], interval=0.02) as sampler:
        time.sleep(0.1)
        sampler.reset()
        base = sampler.last
        block = bytearray(160 * 2**20)  # zero-filled: every page touched
        time.sleep(0.2)
        del block
    assert sampler.peak - base >= 120 * 2**20
    assert sampler.samples >= 3


def test_kvpress_helpers(tmp_path):
    from benchmarks.kvpress_peer import agree, first_difference, method_args_for, probe_venv
    from kvmethods.registry import parse_methods

    assert agree(" abc\n", "abc") and not agree("abc", "abd")
    assert first_difference("abcdef", "abcxef") == 3 and first_difference("abc", "abcd") == 3
    args = type("A", (), {"budget": 512, "window": 32, "kernel_size": 5, "sink": 128})()
    for name in ("full", "snapkv", "streamingllm"):
        parse_methods((name,), method_args_for(name, args))  # valid settings for the project's methods
    info, reason = probe_venv(tmp_path / "missing")
    assert info is None and "--setup" in reason and "\n" not in reason


@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
def test_reconstructed_prompts_are_scbench_prompts(tmp_path, mode):
    """The texts the benchmarks replay are SCBench's own prompts (the vendored reference's pieces,
    gold history), rendered with the model's chat template."""
    from benchmarks.samples import reconstruct_prompts
    from data.sample import Sample, Turn
    from programs import get_task
    from tests.reference import scbench_prompts as ref
    from tests.tiny_model import build_tokenizer

    tokenizer = build_tokenizer(tmp_path)
    task = get_task("kv")
    sample = Sample(id="s", context='JSON data:\n{"a": "b"}', turns=(Turn('Key: "a"', "b"), Turn('Key: "c"', "d")))
    row = {"context": sample.context, "multi_turns": [{"input": t.question, "answer": t.answer} for t in sample.turns]}
    got = reconstruct_prompts(tokenizer, task, sample, mode)
    if mode == "multi-request":
        pieces = ref.create_scdq_prompt(row, "scbench_kv", tokenizer, True)["prompts"]
        assert got == {"context": pieces[0], "prompts": [pieces[0] + q for q in pieces[1:]]}
    else:
        pieces = ref.create_multiturn_prompt(row, "scbench_kv", tokenizer, True)["prompts"]
        assert got == {"context": None, "prompts": [pieces[0], pieces[0] + pieces[1]]}


def test_method_list_with_backend_suffix():
    from benchmarks.options import resolve_method_list

    methods = resolve_method_list(["full", "full@kvm", "a_shape", "snapkv"], ["budget=512"])
    assert list(methods) == ["full", "full@kvm", "a_shape", "snapkv"]
    assert methods["a_shape"].budget == 512 and methods["snapkv"].budget == 512
    assert methods["full@kvm"].name == "full"
    with pytest.raises(ValueError):
        resolve_method_list(["full@flashinfer"], [])
    with pytest.raises(ValueError):
        resolve_method_list(["a_shape"], ["budget=64"])  # must exceed the sink (128)


def test_choice_lists_are_checked_before_any_work():
    from benchmarks.options import MODES, choice_list

    assert choice_list(" multi-turn, ,multi-request", MODES, "--modes") == ("multi-turn", "multi-request")
    with pytest.raises(SystemExit, match=r"^--modes: unknown value 'bogus'; valid: multi-turn, multi-request$"):
        choice_list("multi-turn,bogus", MODES, "--modes")

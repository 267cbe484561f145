"""`cli.py bench` refuses inputs that cannot work before a server starts or a folder is written:
sizes, lists, endpoint URLs, sweep names and endpoints that are not SGLang (one line, exit 2).

No SGLang server runs here: a stand-in (`tests.fake_sglang`) plays the endpoint, and starting a
managed server fails the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fake_sglang import FakeServer

HUGE = str(10**30)


@pytest.fixture(autouse=True)
def no_managed_server(monkeypatch):
    from runtime.server import ManagedServer

    def refuse(self):
        raise AssertionError("a managed SGLang server was started")

    monkeypatch.setattr(ManagedServer, "start", refuse)


@pytest.fixture(scope="module")
def fake(tiny_model_path):
    server = FakeServer("sglang", model_path=str(tiny_model_path))
    with server as url:
        server.url = url
        yield server


@pytest.fixture()
def out(tmp_path) -> Path:
    return tmp_path / "runs"


def bench(*args: str):
    from cli import app

    return CliRunner().invoke(app, ["bench", *args])


def refused(result, out: Path, expected: str) -> str:
    """The run exited 2 with one `error:` line containing `expected`, and wrote nothing."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))
    return lines[0]


# --- 8. sizes that ended in tracebacks -------------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--turns", "50", "--context-tokens", "400"], "kv: context_tokens=400 fits only"),
    (["--parallel", HUGE], f"--parallel {HUGE}: expected 1 to 1024"),
    (["--request-timeout", "inf"], "--request-timeout inf: expected 0.001 to 1000000 seconds"),
    (["--request-timeout", "1e30"], "--request-timeout 1e+30: expected 0.001 to 1000000 seconds"),
])
def test_sizes_that_raised_are_one_line_before_the_run(fake, out, args, expected):
    line = refused(bench("--endpoint", fake.url, "--out", str(out), *args), out, expected)
    assert "Traceback" not in line


def test_a_generator_that_cannot_fit_the_turns_is_a_usage_error_in_the_runner(tiny_tokenizer, tmp_path):
    """The runner's own guard (for callers other than the CLI): a generator's ValueError."""
    from bench.display import make_display
    from bench.runner import BenchSpec, plan_work
    from data.generators import token_counter
    from errors import UsageError

    spec = BenchSpec(tasks=("kv",), num_samples=1, context_tokens=400, num_turns=50)
    with pytest.raises(UsageError, match="kv: context_tokens=400 fits only"):
        plan_work(spec, token_counter(tiny_tokenizer), tmp_path, make_display())


# --- 9. empty and repeated lists -------------------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--tasks", ""], "--tasks is empty"),
    (["--tasks", ",,"], "--tasks ',,': an item is empty"),
    (["--tasks", "kv,,vt"], "--tasks 'kv,,vt': an item is empty"),
    (["--modes", ""], "--modes is empty"),
    (["--modes", "multi-turn,multi-turn"], "--modes 'multi-turn,multi-turn': names multi-turn more than once"),
    (["--tasks", "kv,kv"], "--tasks 'kv,kv': names kv more than once"),
    (["--tasks", "kv,scbench_kv"], "--tasks names kv more than once"),  # a task and its HF config name
    (["--methods", ""], "--methods is empty"),
])
def test_empty_or_repeated_lists_are_refused(fake, out, args, expected):
    refused(bench("--endpoint", fake.url, "--out", str(out), *args), out, expected)


@pytest.mark.parametrize("args, expected", [
    (["--methods", "full,full"], "--methods 'full,full': names full more than once"),
    (["--methods", "snapkv", "--budgets", "512,512"], "--budgets '512,512': names 512 more than once"),
    (["--methods", "snapkv", "--budgets", ",,"], "--budgets ',,': an item is empty"),
])
def test_methods_and_budgets_lists_are_refused_the_same_way(tiny_model_path, out, args, expected):
    refused(bench("--model", str(tiny_model_path), "--out", str(out), *args), out, expected)


# --- 10. failures a rerun cannot fix ---------------------------------------------------------------

def test_a_max_seq_len_without_room_for_the_prompt_is_refused_before_any_request(fake, out):
    fake.requests.clear()
    refused(bench("--endpoint", fake.url, "--out", str(out), "--max-seq-len", "300", "--turns", "2",
                  "--context-tokens", "400"), out, "--max-seq-len 300 leaves 0 tokens for the kv prompt in multi-turn mode")
    assert "/generate" not in fake.requests


def test_a_context_over_the_kv_pool_is_refused_before_the_server_starts(tiny_model_path, out):
    refused(bench("--model", str(tiny_model_path), "--out", str(out), "--context-tokens", "40000"), out,
            "--context-tokens 40000: expected 64 to 8192 (the model's context length)")
    refused(bench("--model", str(tiny_model_path), "--out", str(out), "--context-tokens", "5000",
                  "--max-total-tokens", "4096"), out, "--context-tokens 5000: expected 64 to 4096 (--max-total-tokens")


def test_every_session_rejected_for_its_input_exits_2_without_retry_advice(tiny_model_path, tmp_path):
    server = FakeServer("sglang", model_path=str(tiny_model_path))
    with server as url:
        result = bench("--endpoint", url, "--out", str(tmp_path), "--samples", "1", "--turns", "2",
                       "--context-tokens", "400")
    assert result.exit_code == 2, result.output[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: full: every session failed on its input, as a rerun would: ") and "longer than the model's context length" in last
    assert "retry" not in result.output
    assert server.requests.count("/generate") >= 2  # it ran: the server rejected each session


def test_a_failure_a_rerun_may_fix_still_advises_a_rerun(tiny_model_path, tmp_path):
    server = FakeServer("sglang", model_path=str(tiny_model_path), generate_error=(500, "scheduler crashed"))
    with server as url:
        result = bench("--endpoint", url, "--out", str(tmp_path), "--samples", "1", "--turns", "2",
                       "--context-tokens", "400", "--modes", "multi-turn")
    assert result.exit_code == 0, result.output[-2000:]
    assert "full: 1 sessions failed; run the same command again to retry them" in result.stderr


# --- 11. malformed endpoint URLs -------------------------------------------------------------------

@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:abc", "Port could not be cast to integer value as 'abc'"),
    ("http://a b", "contains a space or control character"),
    ("http://", "no host"),
    ("http://[::1", "Invalid IPv6 URL"),
    ("http://127.0.0.1:99999", "Port out of range"),
    ("ftp://127.0.0.1:1", "not an http:// or https:// URL"),
])
def test_malformed_endpoint_urls_are_usage_errors(out, url, why):
    line = refused(bench("--endpoint", url, "--out", str(out)), out, why)
    assert f"--endpoint {url!r}: " in line and line.endswith("expected http(s)://HOST[:PORT] with a port from 1 to 65535")


def test_well_formed_endpoints_pass_the_url_check():
    from runtime.server import parse_endpoint

    for url in ("http://127.0.0.1:30000", "https://example.org", "http://[::1]:8000/", "http://host:1/v1"):
        assert parse_endpoint(url) == url


# --- 13. upper bounds ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--samples", HUGE], f"--samples {HUGE}: expected 1 to 1000000"),
    (["--context-tokens", str(10**9)], f"--context-tokens {10**9}: expected 64 to 8192 (the model's context length)"),
    (["--max-total-tokens", HUGE], f"--max-total-tokens {HUGE}: expected 1024 to "),
])
def test_sizes_are_bounded_by_the_model_and_the_machine(tiny_model_path, out, args, expected):
    refused(bench("--model", str(tiny_model_path), "--out", str(out), *args), out, expected)


def test_an_endpoint_bounds_the_context_by_the_served_context_length(tiny_model_path, out):
    server = FakeServer("sglang", model_path=str(tiny_model_path), context_length=1024)
    with server as url:
        refused(bench("--endpoint", url, "--out", str(out), "--context-tokens", "2000"), out,
                "--context-tokens 2000: expected 64 to 1024 (the model's context length)")


def test_the_memory_bounds_follow_the_machine():
    from commands.bench_checks import ModelLimits, check_generated_sizes, check_kv_pool
    from errors import UsageError

    gib = 1 << 30
    limits = ModelLimits(context_length=8192, kv_bytes_per_token=23040)
    check_kv_pool(32768, limits, "cpu", 4 * gib)  # 755 MB of KV in 2 GiB
    with pytest.raises(UsageError, match=r"--max-total-tokens 200000: expected 1024 to 93206 \(23040 KV bytes"):
        check_kv_pool(200_000, limits, "cpu", 4 * gib)
    with pytest.raises(UsageError, match="the largest KV pool accepted"):
        check_kv_pool(1 << 25, limits, "cuda", None)  # a GPU's memory is not known here: a fixed bound
    check_generated_sizes(context_tokens=8000, samples=1000, generated_tasks=2, limits=limits, memory=4 * gib,
                          max_total_tokens=None)
    with pytest.raises(UsageError, match=r"expected --samples 1 to 4194 at this size"):
        check_generated_sizes(context_tokens=8000, samples=10_000, generated_tasks=2, limits=limits, memory=4 * gib,
                              max_total_tokens=None)


# --- 14. sweep names -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a\nb", "run\x1b[31mred", "tab\there", "bell\x07", ".hidden", "-flag", "a/b", "..", "x" * 129, "naïve"])
def test_names_outside_the_folder_character_set_are_refused_and_not_echoed_raw(fake, out, name):
    line = refused(bench("--endpoint", fake.url, "--out", str(out), "--name", name), out,
                   "expected 1-128 of A-Z a-z 0-9 . _ + -, not starting with . or -")
    assert line.isprintable() and "\x1b" not in line


def test_plain_names_are_accepted():
    from commands.bench_checks import check_name

    for name in ("kv-2k", "run_1.b+c", "A" * 128, "_x"):
        check_name(name)


# --- 15. an endpoint that is not SGLang ------------------------------------------------------------

def test_an_endpoint_that_answers_health_but_is_not_sglang_is_refused_before_writing(out):
    with FakeServer("health-only") as url:
        refused(bench("--endpoint", url, "--out", str(out)), out,
                f"--endpoint {url} answers /health but is not an SGLang server (GET /get_model_info answered HTTP 404)")

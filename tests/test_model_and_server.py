"""The embedded model's conversion, model resolution errors, and the managed server's lifecycle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from errors import RuntimeFailure, UsageError
from runtime.model import EMBEDDED_MODEL, convert_gguf_to_hf, embedded_gguf_path, resolve_model
from runtime.server import ManagedServer, ServerOptions, is_healthy
from tests.conftest import REPO


def test_cli_default_model_is_the_embedded_one():
    from commands.bench import EMBEDDED

    assert EMBEDDED == EMBEDDED_MODEL


def test_model_resolution_errors(tmp_path):
    with pytest.raises(UsageError, match="no such path"):
        resolve_model("./missing-model")
    with pytest.raises(UsageError, match="no config.json"):
        resolve_model(str(tmp_path))
    assert resolve_model("org/some-model") == "org/some-model"  # hub ids pass through to SGLang


def test_embedded_gguf_converts_to_a_working_checkpoint(tmp_path):
    """Dequantized SmolLM2 answers a trivial question: the weights, Q/K order and tying are right."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = convert_gguf_to_hf(embedded_gguf_path(), tmp_path / "smollm2")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("smollm2.")]  # no temp leftovers
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, return_tensors="pt")
    ids = ids if torch.is_tensor(ids) else ids["input_ids"]
    answer = tok.decode(model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:])
    assert "Paris" in answer


@pytest.mark.server
def test_server_failing_to_start_is_reported_with_its_log(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    options = ServerOptions(model_path=str(tmp_path / "broken"), startup_timeout=120)
    with pytest.raises(RuntimeFailure, match="exited with code"):
        ManagedServer(options, tmp_path / "log.txt", tmp_path / "cache").start()


@pytest.mark.server
def test_server_dies_with_the_process_that_started_it(tmp_path, tiny_model_path):
    """Killing the owner with SIGKILL (no cleanup runs) still takes the server down."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from runtime.server import ManagedServer, ServerOptions
        server = ManagedServer(ServerOptions(model_path={str(tiny_model_path)!r}, max_total_tokens=8192), Path({str(tmp_path / 'log.txt')!r}), Path({str(tmp_path / 'cache')!r}))
        server.start()
        print(server.url, server.process.pid, flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url, pid = owner.stdout.readline().split()
    assert is_healthy(url)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(int(pid)):
        time.sleep(0.5)
    assert not _alive(int(pid))
    assert not is_healthy(url)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False

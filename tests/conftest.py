"""Shared fixtures: the tiny test model and one real SGLang server serving it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One torch thread: two threads stall under load on these small machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent

# The modules that take longest (minutes of real SGLang servers), first: with `--dist loadfile` a
# module runs on one worker, and one started last would leave the other worker idle until it ends.
LONGEST_MODULES = ("test_kvm_server.py", "test_methods_decode_server.py")

# A multi-request session's questions are concurrent forks of its context: whether one finds the
# question template's first tokens already cached by a sibling depends on which reaches the scheduler
# first, so two runs of one session may differ by those few tokens in a question's cached_tokens.
FORK_RACE_TOKENS = 16


def same_reuse(mode: str, first: int, second: int) -> bool:
    """Two runs' cached tokens for one request: equal, or within the fork race in multi-request."""
    return first == second or (mode == "multi-request" and abs(first - second) <= FORK_RACE_TOKENS)


def pytest_collection_modifyitems(config, items):
    """Runs LONGEST_MODULES first; every other module keeps its place (the sort is stable)."""
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    from tests.tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture(scope="session")
def sglang_server(tiny_model_path, tmp_path_factory):
    """A real SGLang server (CPU engine) on the tiny model, shared by the whole test session."""
    from runtime.server import ManagedServer, ServerOptions

    work = tmp_path_factory.mktemp("server")
    options = ServerOptions(model_path=str(tiny_model_path), device="cpu", max_total_tokens=16384)
    with ManagedServer(options, work / "server.log", work / "cache") as server:
        yield server


@pytest.fixture(scope="session")
def connection(sglang_server):
    from runtime.backend import connect

    return connect(sglang_server.url)

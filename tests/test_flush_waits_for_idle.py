"""A cache flush waits for the scheduler to go idle instead of being refused: a flush sent right
after a request returned can find that request still in the scheduler's batch, and SGLang refuses
an immediate flush then ("Flush cache failed."), which failed the session that asked for it."""

from __future__ import annotations

import sglang.lang.backend.runtime_endpoint as runtime_endpoint

from runtime.isolation import FLUSH_IDLE_TIMEOUT_S, NamespacedEndpoint


class _Response:
    status_code = 200

    def json(self):
        return {}


def test_flush_asks_the_server_to_wait_for_idle(monkeypatch):
    sent = []
    monkeypatch.setattr(runtime_endpoint, "http_request",
                        lambda url, **kwargs: sent.append((url, kwargs["method"])) or _Response())
    endpoint = object.__new__(NamespacedEndpoint)  # no server: only the request is checked
    endpoint.base_url, endpoint.api_key, endpoint.verify = "http://127.0.0.1:1", None, None
    endpoint.for_session("s-1").flush_cache()
    assert sent == [(f"http://127.0.0.1:1/flush_cache?timeout={FLUSH_IDLE_TIMEOUT_S}", "POST")]
    assert FLUSH_IDLE_TIMEOUT_S >= 10


def test_benchmark_flush_waits_too(monkeypatch):
    import benchmarks.serving as serving

    opened = []

    class _Opened:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b""

    monkeypatch.setattr(serving.urllib.request, "urlopen",
                        lambda req, timeout: opened.append((req.full_url, timeout)) or _Opened())
    serving.flush_cache("http://127.0.0.1:1/")
    assert opened == [(f"http://127.0.0.1:1/flush_cache?timeout={FLUSH_IDLE_TIMEOUT_S}", FLUSH_IDLE_TIMEOUT_S + 30)]

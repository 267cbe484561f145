"""One radix-cache namespace per session, so sessions never share KV they did not write themselves.

SGLang's RadixAttention shares physical KV slots between any two requests with a common prefix, and
a KV method keeps its decisions per slot. Two sessions whose prompts start alike (the instruction,
the chat header) would then share the first session's compression of that prefix: results would
depend on which session prefilled it first. SGLang keys its radix tree by the request's
`extra_key` as well as its tokens (`RadixKey.extra_key`), so giving every session its own key makes
a session under `--parallel N` see exactly the cache it would see alone, while its own turns and
questions still reuse its own context.
"""

from __future__ import annotations

import copy
import uuid

import sglang.lang.backend.runtime_endpoint as runtime_endpoint
from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint

__all__ = ["FLUSH_IDLE_TIMEOUT_S", "NamespacedEndpoint", "flush_url", "session_namespace"]

# How long a flush waits for the scheduler to go idle (SGLang's `/flush_cache?timeout=`).
FLUSH_IDLE_TIMEOUT_S = 60


def flush_url(base_url: str) -> str:
    """The flush that waits for the scheduler to go idle. A request's response can arrive while the
    scheduler still holds it in its batch; a flush sent then without a timeout is refused ("Flush
    cache failed.") and would fail the session that asked for it."""
    return f"{base_url.rstrip('/')}/flush_cache?timeout={FLUSH_IDLE_TIMEOUT_S}"


class NamespacedEndpoint(RuntimeEndpoint):
    """A `RuntimeEndpoint` whose requests (prefix commits and generations) carry `extra_key`.

    `for_session(key)` returns a cheap copy bound to one namespace; the unbound endpoint sends no
    key (the server's shared namespace)."""

    namespace: str | None = None

    def for_session(self, namespace: str) -> NamespacedEndpoint:
        bound = copy.copy(self)
        bound.namespace = namespace
        return bound

    def flush_cache(self) -> None:
        """Flush the radix cache once the scheduler is idle (`flush_url`)."""
        res = runtime_endpoint.http_request(flush_url(self.base_url), api_key=self.api_key, verify=self.verify,
                                            method="POST")
        self._assert_success(res)

    def _add_images(self, s, data) -> None:
        # Called by every request-building method of RuntimeEndpoint (generate, generate_stream,
        # commit_lazy_operations, fill_image): the one place to add the key to all of them.
        super()._add_images(s, data)
        if self.namespace:
            data["extra_key"] = self.namespace


def session_namespace(*parts: object) -> str:
    """A namespace for one attempt at one session: its identity plus a random suffix, so a session
    rerun after a crash never finds the interrupted attempt's (possibly compressed) KV."""
    return "/".join(str(p) for p in parts) + "#" + uuid.uuid4().hex[:12]

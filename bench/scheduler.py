"""Running sessions in parallel over one or more SGLang servers.

Sessions go to the live servers in turn, at most `parallel` at once. When a session fails and its
server no longer answers its health check, the server is reported and dropped, and the session is
retried on another one; with no server left the run stops. Results come back to the calling thread
one by one, so a single writer appends records and files never interleave.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

from errors import RuntimeFailure
from runtime.server import is_healthy


class EndpointPool:
    """Connections to the servers of one sweep point; `next()` hands out live ones round-robin."""

    def __init__(self, conns: list, on_drop: Callable[[str], None] = lambda _: None, healthy=is_healthy):
        if not conns:
            raise ValueError("EndpointPool needs at least one connection")
        self.conns = list(conns)
        self.dead: dict[str, str] = {}
        self.on_drop = on_drop
        self.healthy = healthy
        self._lock = threading.Lock()
        self._turn = itertools.count()

    def live(self) -> list:
        return [c for c in self.conns if c.url not in self.dead]

    def next(self):
        with self._lock:
            live = self.live()
            if not live:
                reasons = "; ".join(f"{url}: {why}" for url, why in self.dead.items())
                raise RuntimeFailure(f"no SGLang server left to run on ({reasons})")
            return live[next(self._turn) % len(live)]

    def failed(self, conn, error: str) -> bool:
        """After a failed session: True (and the server is dropped) when the server is down."""
        if self.healthy(conn.url):
            return False
        with self._lock:
            if conn.url not in self.dead:
                self.dead[conn.url] = error
                self.on_drop(f"server {conn.url} stopped answering ({error}); its sessions go to the others")
        return True


def run_sessions(
    items: Iterable[Any],
    run_one: Callable[[Any, Any], Any],
    pool: EndpointPool,
    parallel: int = 1,
) -> Iterator[tuple[Any, Any, Any]]:
    """Yields (item, outcome, conn) as sessions finish. `run_one(conn, item)` returns an outcome
    with an `error` attribute (None on success); a failure on a dead server is retried elsewhere."""

    def attempt(item):
        while True:
            conn = pool.next()
            outcome = run_one(conn, item)
            if outcome.error is None or not pool.failed(conn, outcome.error):
                return item, outcome, conn

    items = iter(items)
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="session") as executor:
        running: set[Future] = set()
        for item in itertools.islice(items, max(1, parallel)):
            running.add(executor.submit(attempt, item))
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                nxt = next(items, None)
                if nxt is not None:
                    running.add(executor.submit(attempt, nxt))

"""Keeps torch.distributed's rendezvous store on loopback when its address is loopback.

SGLang's scheduler joins a torch.distributed group even with one rank (tp=1), rendezvousing at
`tcp://127.0.0.1:<port>`. Rank 0 hosts that TCPStore, and torch binds its listening socket to every
interface ('::'), whatever host it was given: a server told to stay on 127.0.0.1 would still accept
connections to the store from the network. torch has no bind-address option, but it accepts an
already listening socket (`master_listen_fd`). So, when the store's host is a loopback address and
this rank hosts it, the socket is bound here to that address and handed over.

Installed in every SGLang process through the `sglang.srt.plugins` entry point (see pyproject.toml);
a no-op for non-loopback hosts (multi-node groups), for clients and for torchelastic's agent store.
"""

from __future__ import annotations

import ipaddress
import socket

_PATCHED = "_scbench_loopback_store"
# Listening sockets handed to stores: kept referenced so their fds stay open for the process lifetime.
_LISTENERS: list[socket.socket] = []


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A TCP socket listening on exactly (host, port)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1" if host == "localhost" else host.strip("[]"), port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def install() -> None:
    """Wraps torch's store factory for rendezvous (tcp:// and env://). Idempotent."""
    import importlib

    # `torch.distributed.rendezvous` the attribute is a function; the module is what holds the factory.
    rendezvous = importlib.import_module("torch.distributed.rendezvous")
    original = rendezvous._create_c10d_store
    if getattr(original, _PATCHED, False):
        return

    def create_store(hostname, port, rank, world_size, timeout, use_libuv=True):
        if rank != 0 or not is_loopback_host(hostname) or rendezvous._torchelastic_use_agent_store():
            return original(hostname, port, rank, world_size, timeout, use_libuv)
        if not 0 <= port < 2**16:
            raise ValueError(f"port must have value from 0 to 65535 but was {port}.")
        sock = listening_socket(hostname, port)
        store = rendezvous.TCPStore(
            host_name=hostname, port=port, world_size=world_size, is_master=True, timeout=timeout,
            multi_tenant=True, master_listen_fd=sock.fileno(), use_libuv=use_libuv,
        )
        # The store's daemon accepts on this fd: never let the socket object close it.
        _LISTENERS.append(sock)
        return store

    setattr(create_store, _PATCHED, True)
    rendezvous._create_c10d_store = create_store

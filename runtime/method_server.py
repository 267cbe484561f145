"""One managed SGLang server for one KV method: the method's launch settings
(`flashinfer_ext.server_settings`) applied to a `ManagedServer`. `cli.py bench` starts a server per
sweep point through it, the benchmarks theirs.

    with serve_method(method, log_path=Path("server.log")) as served:
        served.url, served.command, served.info()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.model import EMBEDDED_MODEL, cache_dir, resolve_model
from runtime.server import ManagedServer, ServerOptions

if TYPE_CHECKING:
    import subprocess

    from flashinfer_ext.server_settings import ServerSettings

__all__ = ["MethodServer", "serve_method"]


@dataclass
class MethodServer:
    """A ready server running `method`, and how it was started."""

    method: Any  # a kvmethods method (or composition) instance
    model: str  # as given (e.g. the embedded model's name)
    server: ManagedServer
    settings: ServerSettings
    stats_path: Path | None  # where the `kvm` backend writes its kept-KV lines (None: not on kvm)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def process(self) -> subprocess.Popen | None:
        """The server's process (the leader of its process group)."""
        return self.server.process

    @property
    def startup_seconds(self) -> float:
        return self.server.startup_seconds or 0.0

    @property
    def command(self) -> list[str]:
        return self.server.options.command(self.server.port)

    def info(self) -> dict[str, Any]:
        """What a run header records about the server."""
        options = self.server.options
        return {
            "managed": True, "model": self.model, "model_path": options.model_path, "device": options.device,
            "command": self.command, "env": self.settings.env, "startup_seconds": round(self.startup_seconds, 2),
        }


@contextlib.contextmanager
def serve_method(
    method, *, log_path: Path, model: str = EMBEDDED_MODEL, device: str = "cpu", max_total_tokens: int = 32768,
    stats_path: Path | None = None, extra_args: Sequence[str] = (), kvm_always: bool = False,
) -> Iterator[MethodServer]:
    """Starts a server on `model` set up for `method` (stopped, with its process group, on any exit).

    `stats_path`: where the `kvm` backend appends its kept-KV lines; `extra_args`: more launch flags
    (after the method's); `kvm_always`: run a method SGLang runs natively (`full`) on `kvm` too.
    """
    from flashinfer_ext.server_settings import server_settings

    model_path = resolve_model(model)
    settings = server_settings(method, device, str(stats_path) if stats_path else None, kvm_always=kvm_always)
    options = ServerOptions(
        model_path=model_path, device=device, max_total_tokens=max_total_tokens,
        attention_backend=settings.attention_backend, extra_args=settings.extra_args + list(extra_args),
        env=settings.env,
    )
    with ManagedServer(options, Path(log_path), cache_dir()) as server:
        yield MethodServer(method, model, server, settings, stats_path if settings.uses_plugin else None)

"""A managed SGLang server: started on 127.0.0.1, health-checked, logged, shut down by its own PID.

The server runs in its own process group (its leader is the PID we started), so stopping it takes
SGLang's scheduler and detokenizer children with it. It also gets SIGTERM if this process dies
(PR_SET_PDEATHSIG), so it never outlives the command that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from errors import RuntimeFailure, UsageError

HOST = "127.0.0.1"


@dataclass
class ServerOptions:
    """What the managed server is started with. `device="cpu"` adds the CPU engine settings."""

    model_path: str
    device: str = "cpu"
    max_total_tokens: int = 32768
    context_length: int | None = None
    attention_backend: str | None = None  # default: torch_native on CPU, SGLang's choice on GPU
    host: str = HOST
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # added to the server's environment
    startup_timeout: float = 300.0

    def command(self, port: int) -> list[str]:
        cmd = [
            sys.executable, "-m", "sglang.launch_server",
            "--model-path", self.model_path,
            "--host", self.host,
            "--port", str(port),
            "--max-total-tokens", str(self.max_total_tokens),
            "--sleep-on-idle",  # an idle scheduler otherwise spins a core
            "--log-level", "warning",
        ]
        if self.context_length:
            cmd += ["--context-length", str(self.context_length)]
        if self.device == "cpu":
            cmd += ["--device", "cpu", "--disable-cuda-graph"]
            cmd += ["--attention-backend", self.attention_backend or "torch_native"]
        elif self.attention_backend:
            cmd += ["--attention-backend", self.attention_backend]
        return cmd + list(self.extra_args)

    def environment(self, cache_dir: Path) -> dict[str, str]:
        env = {**os.environ, **self.env}
        env["SGLANG_CACHE_DIR"] = str(cache_dir / "sglang")
        if self.device == "cpu":
            env["SGLANG_USE_CPU_ENGINE"] = "1"
            # Two threads collapsed throughput erratically on these 2-core machines.
            env.setdefault("OMP_NUM_THREADS", "1")
        return env


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


ENDPOINT_FORM = "http(s)://HOST[:PORT] with a port from 1 to 65535"


def parse_endpoint(url: str) -> str:
    """`url` checked as a server address (UsageError naming what is wrong); returned unchanged.

    Caught here rather than by the first request: urllib reports a bad port or host as a traceback
    (`http.client.InvalidURL`) or as an unreachable server, which reads like a server problem.
    """
    def bad(why: str) -> UsageError:
        return UsageError(f"--endpoint {url!r}: {why}; expected {ENDPOINT_FORM}")

    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise bad("contains a space or control character")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a non-numeric or out-of-range port
    except ValueError as err:
        raise bad(str(err)) from None
    if parts.scheme not in ("http", "https"):
        raise bad("not an http:// or https:// URL")
    if not parts.hostname:
        raise bad("no host")
    if port == 0:
        raise bad("port 0")
    return url


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        return False


def check_is_sglang(url: str, timeout: float = 10.0) -> dict:
    """The server's `/get_model_info`, after checking that `url` is an SGLang server: something else
    may answer `/health` with 200 too. UsageError (the address given is wrong) when it is not."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/get_model_info", timeout=timeout) as response:
            info = json.loads(response.read())
    except urllib.error.HTTPError as err:
        why = f"GET /get_model_info answered HTTP {err.code}"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise RuntimeFailure(f"cannot reach SGLang server at {url}: {err}") from None
    except ValueError:
        why = "GET /get_model_info did not answer JSON"
    else:
        if isinstance(info, dict) and isinstance(info.get("model_path"), str) and "is_generation" in info:
            return info
        why = "GET /get_model_info lacks model_path and is_generation"
    raise UsageError(f"--endpoint {url} answers /health but is not an SGLang server ({why})")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux), own process group."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class ManagedServer:
    """Context manager: `with ManagedServer(opts, log_path) as server: server.url`."""

    def __init__(self, options: ServerOptions, log_path: Path, cache_dir: Path):
        self.options = options
        self.log_path = Path(log_path)
        self.cache_dir = Path(cache_dir)
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    def start(self) -> "ManagedServer":
        self.port = free_port(self.options.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.options.command(self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.options.environment(self.cache_dir),
                preexec_fn=_die_with_parent,
            )
        deadline = started + self.options.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeFailure(
                    f"SGLang server exited with code {self.process.returncode} while starting; "
                    f"last log line: {self.last_log_line()} (full log: {self.log_path})"
                )
            if is_healthy(self.url):
                self.startup_seconds = time.monotonic() - started
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeFailure(f"SGLang server not healthy after {self.options.startup_timeout:.0f}s (log: {self.log_path})")

    def last_log_line(self) -> str:
        try:
            lines = [l for l in self.log_path.read_text(errors="replace").splitlines() if l.strip()]
        except OSError:
            return "(no log)"
        return lines[-1][-300:] if lines else "(empty log)"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the server's process group (led by our PID), SIGKILL after `grace` seconds."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        pgid = process.pid  # started with setsid: the group id is the server's PID
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # Children (scheduler, detokenizer) may outlive the leader briefly; finish the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)

    def __enter__(self) -> "ManagedServer":
        previous = signal.getsignal(signal.SIGTERM)
        self._previous_sigterm = previous
        # Turn SIGTERM into SystemExit so the `finally` below (and __exit__) run.
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _raise_system_exit)
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
        if getattr(self, "_previous_sigterm", None) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _raise_system_exit(signum, frame):
    raise SystemExit(128 + signum)

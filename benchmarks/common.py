"""Helpers shared by the server benchmarks: managed servers, request recording and replay, peak RSS,
tables and target lines.

Everything that needs a server is imported lazily, so `--help` and the pure helpers stay fast.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EMBEDDED = "embedded:smollm2-135m-instruct"


# --------------------------------------------------------------------------------------------------
# Output: tables, ratios, targets, JSON, load
# --------------------------------------------------------------------------------------------------


def default_out(name: str) -> Path:
    return Path("runs") / "benchmarks" / name


# programs.base.MODES, restated: importing programs pulls in sglang, and --help should stay fast.
MODES = ("multi-turn", "multi-request")


def choice_list(value: str, valid: Sequence[str], flag: str) -> tuple[str, ...]:
    """A comma-separated option checked against its choices; exits with one line naming the bad
    entry and what is accepted."""
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    for item in items:
        if item not in valid:
            raise SystemExit(f"{flag}: unknown value {item!r}; valid: {', '.join(valid)}")
    return items


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def target_line(goal: str, detail: str, met: bool) -> str:
    return f"Target: {goal}: {detail} -> {verdict(met)}"


def within(measured: float, expected: float, tolerance: float) -> bool:
    """|measured - expected| <= tolerance * expected."""
    return abs(measured - expected) <= tolerance * abs(expected)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A plain fixed-width table; `align` is one character per column ('<' or '>'), default: first
    column left, the rest right."""
    rows = [["-" if v is None else str(v) for v in row] for row in rows]
    align = align or "<" + ">" * (len(headers) - 1)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    def line(cells):
        return " | ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths))
    out = [line(headers), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def write_json(path: Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def load_note() -> dict[str, Any]:
    """The machine's load averages (another process may share the cores), as `uptime` shows them."""
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1m": round(one, 2), "loadavg_5m": round(five, 2), "loadavg_15m": round(fifteen, 2),
            "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def load_text(note: dict[str, Any]) -> str:
    return (f"load average {note['loadavg_1m']:.2f}, {note['loadavg_5m']:.2f}, {note['loadavg_15m']:.2f} "
            f"on {note['cpus']} CPUs (OMP_NUM_THREADS={note['omp_num_threads']})")


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for dist in ("sglang", "torch", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# --------------------------------------------------------------------------------------------------
# Peak RSS of a process group
# --------------------------------------------------------------------------------------------------


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def group_pids(pgid: int) -> list[int]:
    """Every process whose process group is `pgid` (a managed server is its own group's leader)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
    return pids


def rss_bytes(pids: Iterable[int]) -> int:
    """Sum of the resident set sizes of `pids` (processes that vanished count 0). Pages shared
    between the processes (e.g. the same mapped library) count once per process."""
    import psutil

    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            total += psutil.Process(pid).memory_info().rss
    return total


class PeakRss:
    """Samples the summed RSS of `pids_fn()` every `interval` seconds in a thread; `peak` is the
    highest sum since the last `reset()`."""

    def __init__(self, pids_fn: Callable[[], Iterable[int]], interval: float = 0.1):
        self.pids_fn = pids_fn
        self.interval = interval
        self.peak = 0
        self.last = 0
        self.samples = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        value = rss_bytes(self.pids_fn())
        with self._lock:
            self.last = value
            self.peak = max(self.peak, value)
            self.samples += 1
        return value

    def reset(self) -> None:
        with self._lock:
            self.peak = 0
            self.samples = 0
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> "PeakRss":
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        return self.peak

    def __enter__(self) -> "PeakRss":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# Servers and data
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def managed_server(log_path: Path, *, model: str = EMBEDDED, extra_args: Sequence[str] = (),
                   env: dict[str, str] | None = None, attention_backend: str | None = None,
                   max_total_tokens: int = 32768):
    """A ManagedServer on the embedded model (stopped, with its process group, on any exit)."""
    from runtime.model import cache_dir, resolve_model
    from runtime.server import ManagedServer, ServerOptions

    options = ServerOptions(model_path=resolve_model(model), max_total_tokens=max_total_tokens,
                            attention_backend=attention_backend, extra_args=list(extra_args), env=dict(env or {}))
    with ManagedServer(options, Path(log_path), cache_dir()) as server:
        server.command = options.command(server.port)
        yield server


@contextlib.contextmanager
def method_server(method, method_args: Sequence[str] = (), log_path: Path | None = None, *,
                  kvm_full: bool = False, max_total_tokens: int = 32768, extra_args: Sequence[str] = ()):
    """A managed server set up for a KV method exactly as `cli.py bench --methods` starts it.

    `method` is a method instance or a name (parsed with `method_args`); `kvm_full` runs `full` on
    the project's `kvm` backend instead of SGLang's own attention."""
    from flashinfer_ext.server_settings import parse_methods, server_settings

    if isinstance(method, str):
        method = parse_methods((method,), tuple(method_args))[0]
    settings = server_settings(method, "cpu", native_full=not kvm_full)
    with managed_server(log_path, extra_args=settings.extra_args + list(extra_args), env=settings.env,
                        attention_backend=settings.attention_backend, max_total_tokens=max_total_tokens) as server:
        server.method = method
        yield server


def resolve_method_list(names: Sequence[str], method_args: Sequence[str]) -> dict[str, Any]:
    """{name: method instance} for names like `snapkv` or `full@kvm` with shared `--method-arg`
    settings (each applies to the methods that have the field). Raises ValueError on bad input."""
    from flashinfer_ext.server_settings import parse_methods

    for name in names:
        if name.partition("@")[2] not in ("", "kvm"):
            raise ValueError(f"{name!r}: the only backend suffix is @kvm (e.g. full@kvm)")
    bases = tuple(dict.fromkeys(n.partition("@")[0] for n in names))
    parsed = dict(zip(bases, parse_methods(bases, tuple(method_args))))
    return {name: parsed[name.partition("@")[0]] for name in names}


def warm_up(url: str) -> None:
    """One short request, so first-request costs do not land in the first measured session."""
    post_generate(url, {"text": "Hello", "sampling_params": {"max_new_tokens": 4, "temperature": 0.0}})


def kv_samples(tokenizer, *, context_tokens: int, turns: int, samples: int = 1, seed: int = 0):
    from data.generators import generate_kv, token_counter

    return generate_kv(token_counter(tokenizer), num_samples=samples, context_tokens=context_tokens,
                       num_turns=turns, seed=seed)


# --------------------------------------------------------------------------------------------------
# Recording what the frontend sends, and replaying it with raw HTTP
# --------------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One HTTP request the SGLang frontend made: what it sent, what came back, when."""

    url: str
    payload: dict[str, Any] | None
    start: float
    end: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    text: str | None = None

    @property
    def is_generate(self) -> bool:
        return self.url.endswith("/generate")


class Recorder:
    """Patches the frontend's `http_request` (sglang.lang.backend.runtime_endpoint) to record every
    request: the exact JSON payload, the response's meta_info, start and end times."""

    def __init__(self):
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def __enter__(self) -> "Recorder":
        import sglang.lang.backend.runtime_endpoint as endpoint

        self._module = endpoint
        self._original = endpoint.http_request
        original = self._original

        def recording(url, json=None, *args, **kwargs):
            call = Call(url=url, payload=copy.deepcopy(json), start=time.monotonic())
            res = original(url, json, *args, **kwargs)
            call.end = time.monotonic()
            with contextlib.suppress(Exception):
                body = res.json()
                if isinstance(body, dict):
                    call.meta = body.get("meta_info") or {}
                    call.text = body.get("text")
            with self._lock:
                self.calls.append(call)
            return res

        endpoint.http_request = recording
        return self

    def __exit__(self, *exc) -> None:
        self._module.http_request = self._original

    def generate_calls(self) -> list[Call]:
        return sorted((c for c in self.calls if c.is_generate), key=lambda c: c.start)


def waves(calls: Sequence[Call]) -> list[list[Call]]:
    """Calls grouped by overlap in time: a call that starts before every call of the current group
    has ended runs concurrently with it. Sequential calls give groups of one."""
    groups: list[list[Call]] = []
    horizon = float("-inf")
    for call in sorted(calls, key=lambda c: c.start):
        if groups and call.start < horizon:
            groups[-1].append(call)
            horizon = max(horizon, call.end)
        else:
            groups.append([call])
            horizon = call.end
    return groups


def post_generate(url: str, payload: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """POST /generate with a JSON payload (the same urllib path SGLang's frontend uses)."""
    data = json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(url.rstrip("/") + "/generate", data=data,
                                 headers={"Content-Type": "application/json; charset=utf-8"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def flush_cache(url: str) -> None:
    req = urllib.request.Request(url.rstrip("/") + "/flush_cache", method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()


def replay(url: str, groups: Sequence[Sequence[dict[str, Any]]]) -> tuple[float, list[dict[str, Any]]]:
    """Sends each group of payloads in order, the payloads of a group concurrently (one thread each,
    as the frontend's forks do); returns (wall seconds, responses in payload order)."""
    responses: list[dict[str, Any]] = []
    started = time.monotonic()
    for group in groups:
        if len(group) == 1:
            responses.append(post_generate(url, group[0]))
        else:
            with ThreadPoolExecutor(len(group)) as pool:
                responses += list(pool.map(lambda p: post_generate(url, p), group))
    return time.monotonic() - started, responses


def prefill_only(payload: dict[str, Any]) -> dict[str, Any]:
    """The same request without decoding (max_new_tokens=0): the server only prefills the prompt."""
    out = copy.deepcopy(payload)
    out.setdefault("sampling_params", {})["max_new_tokens"] = 0
    return out


def computed_prefill(metas: Iterable[dict[str, Any]]) -> int:
    """Prefill tokens the server computed: sum of prompt_tokens - cached_tokens."""
    return sum(int(m.get("prompt_tokens") or 0) - int(m.get("cached_tokens") or 0) for m in metas)


def expected_prefill(mode: str, prompt_tokens: Sequence[int], context_tokens: int | None = None) -> int:
    """Prefill tokens of "one context prefill plus the questions".

    multi-turn: `prompt_tokens` are the turns' prompts, each extending the previous one; the first
    prefill holds the context (+ question 1), each later turn adds only its new text:
    p1 + sum(p_i - p_{i-1}).
    multi-request: `context_tokens` is the committed shared prefix, `prompt_tokens` the requests over
    it: context + sum(p_i - context).
    """
    if not prompt_tokens:
        return 0 if context_tokens is None else context_tokens
    if mode == "multi-turn":
        return prompt_tokens[0] + sum(b - a for a, b in zip(prompt_tokens, prompt_tokens[1:]))
    if mode == "multi-request":
        if context_tokens is None:
            raise ValueError("multi-request needs context_tokens")
        return context_tokens + sum(p - context_tokens for p in prompt_tokens)
    raise ValueError(f"unknown mode {mode!r}")


# --------------------------------------------------------------------------------------------------
# Prompts rebuilt from the task's templates and the model's own HF chat template
# --------------------------------------------------------------------------------------------------

def reconstruct_prompts(tokenizer, task, sample, mode: str, max_turns: int | None = None,
                        style: str = "official") -> dict[str, Any]:
    """The texts a session sends, assembled from its prompt pieces (`programs.prompts`, which
    tests/test_prompt_parity.py checks against SCBench's own prompt code), with the gold history:
    {"context": the committed shared prefix (multi-request) or None, "prompts": one text per
    answering request}."""
    from programs.prompts import session_prompts
    from runtime.chat_template import chat_format

    chat = chat_format(tokenizer) if getattr(tokenizer, "chat_template", None) else None
    pieces = session_prompts(task, sample, chat, style, max_turns).pieces(mode)
    if mode == "multi-request":
        return {"context": pieces[0], "prompts": [pieces[0] + question for question in pieces[1:]]}
    return {"context": None, "prompts": ["".join(pieces[: i + 1]) for i in range(len(pieces))]}

"""Measuring and reporting: the machine's load, a process group's peak memory, prefill token counts,
ratios, tables, target verdicts and result files."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------------
# Ratios, tables, targets, JSON
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# The machine: load, memory
# --------------------------------------------------------------------------------------------------


def load_note() -> dict[str, Any]:
    """The machine's load averages (another process may share the cores), as `uptime` shows them."""
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1m": round(one, 2), "loadavg_5m": round(five, 2), "loadavg_15m": round(fifteen, 2),
            "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def load_text(note: dict[str, Any]) -> str:
    return (f"load average {note['loadavg_1m']:.2f}, {note['loadavg_5m']:.2f}, {note['loadavg_15m']:.2f} "
            f"on {note['cpus']} CPUs (OMP_NUM_THREADS={note['omp_num_threads']})")


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

    def start(self) -> PeakRss:
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

    def __enter__(self) -> PeakRss:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# Prefill work
# --------------------------------------------------------------------------------------------------


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

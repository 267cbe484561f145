"""A run or sweep directory read back as sessions to step through, and a navigator over them.

A path holding samples.jsonl is one run; a path whose subfolders hold one is a sweep (one point per
method and budget). Older runs keep several methods in one samples.jsonl, told apart by `method`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import rundir
from runtime.errors import UsageError

MODE_ORDER = ("multi-turn", "multi-request")  # programs.base.MODES, which imports SGLang


@dataclass(frozen=True)
class TurnView:
    turn: int
    question: str
    prediction: str
    gold: Any  # a string, or a list of strings (Retr.MultiHop)
    score: float | None
    score_fixed: float | None
    prompt_tokens: int | None
    cached_tokens: int | None
    new_prefill_tokens: int | None
    latency: float | None
    kept_kv: float | None
    kept_map: list[list[float]] | None

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> TurnView:
        return cls(
            turn=int(rec["turn"]), question=rec.get("question", ""), prediction=rec.get("prediction") or "",
            gold=rec.get("gold", ""), score=rec.get("score"), score_fixed=rec.get("score_fixed"),
            prompt_tokens=rec.get("prompt_tokens"), cached_tokens=rec.get("cached_tokens"),
            new_prefill_tokens=rec.get("new_prefill_tokens"), latency=rec.get("latency"),
            kept_kv=rec.get("kept_kv"), kept_map=rec.get("kept_map"),
        )


class Contexts:
    """A run's contexts/<task>.jsonl, read when first needed: contexts can be large, and every point
    of a sweep has its own copy, so only the last task read is kept."""

    def __init__(self, run_dir: Path):
        self.folder = run_dir / rundir.CONTEXTS
        self.task: str | None = None
        self.by_id: dict[str, str] = {}

    def get(self, task: str, sample_id: str) -> str | None:
        if task != self.task:
            rows = rundir.read_jsonl(self.folder / f"{task}.jsonl")
            self.by_id = {str(r["id"]): str(r["context"]) for r in rows if "id" in r and "context" in r}
            self.task = task
        return self.by_id.get(sample_id)


@dataclass
class Session:
    method: str  # the sweep point's label: "full", "snapkv", "snapkv-b512"
    budget: int | None
    task: str
    mode: str
    sample_id: str
    sample_index: int
    turns: list[TurnView]
    error: str | None = None  # the session failed: it has no turns
    contexts: Contexts | None = field(default=None, repr=False, compare=False)

    @property
    def context(self) -> str | None:
        """The shared context (None for older runs, which did not keep contexts/)."""
        return self.contexts.get(self.task, self.sample_id) if self.contexts else None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.task, self.mode, self.sample_id


def run_dirs(path: Path) -> list[Path]:
    """The run directories under `path`: itself, or a sweep's points in the sweep's order."""
    if not path.is_dir():
        raise UsageError(f"{path}: no such directory")
    if (path / rundir.SAMPLES).exists():
        return [path]
    found = sorted(p for p in path.iterdir() if (p / rundir.SAMPLES).exists())
    if not found:
        raise UsageError(f"{path}: not a run or sweep directory (no {rundir.SAMPLES} in it or its subfolders)")
    listed = _read_json(path / "sweep.json").get("points", [])
    rank = {name: i for i, name in enumerate(listed)}
    return sorted(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def load_sessions(path: Path) -> list[Session]:
    """Every session under `path`, ordered by method (as in the sweep), task, mode and sample."""
    sessions: dict[tuple, Session] = {}
    task_order: list[str] = []
    for run_dir in run_dirs(path):
        header = _read_json(run_dir / rundir.HEADER)
        task_order += header.get("spec", {}).get("tasks", [])
        contexts = Contexts(run_dir) if (run_dir / rundir.CONTEXTS).is_dir() else None
        for rec in rundir.read_jsonl(run_dir / rundir.SAMPLES):
            method = rec.get("point") or header.get("method_label") or rec.get("method") or "full"
            key = (method, rec["task"], rec["mode"], str(rec["sample_id"]))
            session = sessions.get(key)
            if session is None:
                session = sessions[key] = Session(
                    method, rec.get("budget", header.get("budget")), rec["task"], rec["mode"], key[3],
                    int(rec.get("sample_index", 0)), [], contexts=contexts,
                )
            if rec.get("error"):
                session.error = rec["error"]
            elif "turn" in rec:
                session.turns.append(TurnView.from_record(rec))
    if not sessions:
        raise UsageError(f"{path}: no records in {rundir.SAMPLES} yet")
    for session in sessions.values():
        session.turns = sorted({t.turn: t for t in session.turns}.values(), key=lambda t: t.turn)  # a rerun's turn wins
    methods = {m: i for i, m in enumerate(dict.fromkeys(k[0] for k in sessions))}
    tasks = {t: i for i, t in enumerate(dict.fromkeys(task_order))}
    modes = {m: i for i, m in enumerate(MODE_ORDER)}
    return sorted(sessions.values(), key=lambda s: (
        methods[s.method], tasks.get(s.task, len(tasks)), s.task, modes.get(s.mode, len(modes)), s.mode,
        s.sample_index, s.sample_id,
    ))


class Navigator:
    """The session and turn on screen. Turns and sessions stop at the ends; methods cycle."""

    def __init__(self, sessions: list[Session]):
        if not sessions:
            raise ValueError("no sessions to navigate")
        self.sessions = sessions
        self.methods = list(dict.fromkeys(s.method for s in sessions))
        self.index = 0
        self.turn_index = 0

    @property
    def session(self) -> Session:
        return self.sessions[self.index]

    @property
    def turn(self) -> TurnView | None:
        turns = self.session.turns
        return turns[self.turn_index] if turns else None

    def _go(self, index: int, turn_index: int = 0) -> None:
        self.index = min(max(index, 0), len(self.sessions) - 1)
        self.turn_index = min(max(turn_index, 0), max(len(self.session.turns) - 1, 0))

    def next_turn(self) -> None:
        self._go(self.index, self.turn_index + 1)

    def prev_turn(self) -> None:
        self._go(self.index, self.turn_index - 1)

    def next_session(self) -> None:
        self._go(self.index + 1)

    def prev_session(self) -> None:
        self._go(self.index - 1)

    def switch_method(self, step: int = 1) -> None:
        """The next method's session of the same task, mode and sample (same turn), else its first
        session of the same task and mode, else its first session."""
        method = self.methods[(self.methods.index(self.session.method) + step) % len(self.methods)]
        here = self.session
        candidates = [i for i, s in enumerate(self.sessions) if s.method == method]
        same = [i for i in candidates if self.sessions[i].key == here.key]
        similar = [i for i in candidates if self.sessions[i].key[:2] == here.key[:2]]
        index = (same or similar or candidates)[0]
        self._go(index, self.turn_index if same else 0)

    def start_at(self, task: str | None = None, mode: str | None = None, method: str | None = None) -> None:
        """Go to the first session matching the filters; none matching is a usage error."""
        task = task.removeprefix("scbench_") if task else None  # the HF config name works too
        for i, s in enumerate(self.sessions):
            if (task in (None, s.task) and mode in (None, s.mode)
                    and (method is None or re.fullmatch(rf"{re.escape(method)}(-b\d+)?", s.method))):
                self._go(i)
                return
        asked = " ".join(f"--{k} {v}" for k, v in (("task", task), ("mode", mode), ("method", method)) if v)
        have = "; ".join(f"{k}: {', '.join(dict.fromkeys(getattr(s, k) for s in self.sessions))}" for k in ("task", "mode", "method"))
        raise UsageError(f"no session matches {asked} (this run has {have})")

    def position(self) -> str:
        turns = len(self.session.turns)
        turn = f"turn {self.turn_index + 1}/{turns}" if turns else "no turns"
        return f"session {self.index + 1}/{len(self.sessions)}, {turn}"

"""A run or sweep directory read back as sessions to step through, and a navigator over them.

Runs are read by `results.reader` (a sweep, one point, or an older single-directory run, older
formats migrated); sessions are named by their point as the report names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from errors import UsageError
from results.agreement import Agreement, agreements
from results.identity import PointIdentity, display_names
from results.reader import check_contexts, load_contexts, load_runs
from results.records import TurnRecord
from results.report import MODE_ORDER


class Contexts:
    """A run's contexts/<task>.jsonl, read when first needed: contexts can be large, and every point
    of a sweep has its own copy, so only the last task read is kept."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.task: str | None = None
        self.by_id: dict[str, str] = {}

    def get(self, task: str, sample_id: str) -> str | None:
        if task != self.task:
            rows = load_contexts(self.run_dir, task) or []
            self.by_id = {str(r["id"]): str(r["context"]) for r in rows if "id" in r and "context" in r}
            self.task = task
        return self.by_id.get(sample_id)


@dataclass
class Session:
    method: str  # the point's name, as the report names it: "full", "snapkv-b512", "snapkv (budget=256)"
    point: str  # the point's label in its sweep
    budget: int | None
    task: str
    mode: str
    sample_id: str
    sample_index: int
    turns: list[TurnRecord]
    error: str | None = None  # the session failed: it has no turns
    # Per turn number, the answer's agreement with the full-attention point's (results.agreement).
    agreement: dict[int, Agreement] = field(default_factory=dict, repr=False, compare=False)
    contexts: Contexts | None = field(default=None, repr=False, compare=False)

    @property
    def context(self) -> str | None:
        """The shared context (None for runs without contexts/, which older runs did not keep)."""
        return self.contexts.get(self.task, self.sample_id) if self.contexts else None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.task, self.mode, self.sample_id


def load_sessions(path: Path) -> list[Session]:
    """Every session under `path`, ordered by point (as in the sweep), task, mode and sample."""
    runs = load_runs([path])
    records = [r for run in runs for r in run.records]
    points = [PointIdentity.of(r) for r in records]
    names = display_names(points)
    agreed = {id(r): a for r, a in zip(records, agreements(records, points))}
    sessions: dict[tuple, Session] = {}
    task_order: list[str] = []
    for run in runs:
        task_order += run.tasks
        contexts = Contexts(run.path) if check_contexts(run.path) else None
        for rec in run.records:
            name = names[PointIdentity.of(rec)]
            key = (name, rec.task, rec.mode, rec.sample_id)
            session = sessions.get(key)
            if session is None:
                session = sessions[key] = Session(
                    name, rec.point, rec.budget, rec.task, rec.mode, rec.sample_id, rec.sample_index, [], contexts=contexts,
                )
            if rec.failed:
                session.error = rec.error
            else:
                session.turns.append(rec)
                if agreed[id(rec)] is not None:
                    session.agreement[rec.turn] = agreed[id(rec)]
    if not sessions:
        raise UsageError(f"{path}: no records in its samples.jsonl yet")
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
    def turn(self) -> TurnRecord | None:
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
                    and (method in (None, s.method) or re.fullmatch(rf"{re.escape(method)}(-b\d+)?", s.point))):
                self._go(i)
                return
        asked = " ".join(f"--{k} {v}" for k, v in (("task", task), ("mode", mode), ("method", method)) if v)
        have = "; ".join(f"{k}: {', '.join(dict.fromkeys(getattr(s, k) for s in self.sessions))}" for k in ("task", "mode", "method"))
        raise UsageError(f"no session matches {asked} (this run has {have})")

    def position(self) -> str:
        turns = len(self.session.turns)
        turn = f"turn {self.turn_index + 1}/{turns}" if turns else "no turns"
        return f"session {self.index + 1}/{len(self.sessions)}, {turn}"

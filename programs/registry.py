"""Tasks register by name; lookups fail with the list of valid names."""

from __future__ import annotations

import difflib
import importlib

from programs.base import HISTORIES, MODES, PROGRAMS, PROMPT_STYLES, TaskSpec
from runtime.errors import UsageError

TASKS: dict[str, TaskSpec] = {}
# Modules that define tasks; imported on first lookup so `import programs` stays light.
_TASK_MODULES = tuple(
    f"programs.{name}"
    for name in (
        "kv", "prefix_suffix", "vt",  # String Retrieval
        "repoqa", "qa_eng", "qa_chn", "choice_eng",  # Semantic Retrieval
        "many_shot", "mf", "summary",  # Global Information
        "summary_with_needles", "repoqa_and_kv",  # Multi-task
    )
)


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in TASKS:
        raise ValueError(f"task {spec.name!r} registered twice")
    TASKS[spec.name] = spec
    return spec


def _load_all() -> None:
    for module in _TASK_MODULES:
        importlib.import_module(module)


def task_names() -> list[str]:
    _load_all()
    return list(TASKS)


def unknown(kind: str, value: str, valid: list[str] | tuple[str, ...]) -> UsageError:
    close = difflib.get_close_matches(value, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return UsageError(f"unknown {kind} '{value}'.{hint} Valid: {', '.join(valid)}")


def get_task(name: str) -> TaskSpec:
    _load_all()
    # Accept the HF config name too (scbench_kv -> kv).
    key = name.removeprefix("scbench_")
    if key not in TASKS:
        raise unknown("task", name, list(TASKS))
    return TASKS[key]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise unknown("mode", mode, MODES)
    return mode


def check_history(history: str) -> str:
    if history not in HISTORIES:
        raise unknown("history", history, HISTORIES)
    return history


def check_prompts(style: str) -> str:
    if style not in PROMPT_STYLES:
        raise unknown("prompt style", style, PROMPT_STYLES)
    return style


def get_program(task: str, mode: str):
    """The task's program for `mode`, as an `@sgl.function` with the task bound."""
    spec = get_task(task)
    return PROGRAMS[check_mode(mode)].bind(task=spec)

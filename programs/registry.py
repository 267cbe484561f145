"""Tasks register by name; lookups fail with the list of valid names.

Task modules are discovered, not listed: every module of `programs/` (but `base`, the SGLang
programs) and every module `SCBENCH_PLUGINS` names (`discovery`) is imported on the first lookup;
importing a task module registers its `TaskSpec`, and the shared modules register nothing. Nothing here imports SGLang; only
`get_program` does, when it is called.
"""

from __future__ import annotations

import difflib

from discovery import import_package, import_plugins, plugin_modules
from errors import UsageError
from programs.prompts import PROMPT_STYLES
from programs.spec import CATEGORIES, HISTORIES, MODES, TaskSpec

__all__ = [
    "TASKS", "all_tasks", "check_history", "check_mode", "check_prompts", "get_program", "get_task",
    "register_task", "task_names", "unknown",
]

TASKS: dict[str, TaskSpec] = {}
# Not imported by discovery: the SGLang programs (the registry stays free of SGLang and torch).
_NOT_TASKS = frozenset({"base"})
_discovered_plugins: tuple[str, ...] | None = None


def register_task(spec: TaskSpec) -> TaskSpec:
    """Make `spec` available by its name and its config; returns it (a task module's last line)."""
    for other in TASKS.values():
        if spec.name in (other.name, other.config) or spec.config in (other.name, other.config):
            raise ValueError(f"task {spec.name!r} ({spec.config}) clashes with the registered {other.name!r} ({other.config})")
    TASKS[spec.name] = spec
    return spec


def _discover() -> None:
    """Imports the task modules once, and the plugins again when `SCBENCH_PLUGINS` changed."""
    global _discovered_plugins
    if _discovered_plugins is None:
        import_package("programs", skip=_NOT_TASKS)
        _discovered_plugins = ()
    if _discovered_plugins != (plugins := plugin_modules()):
        import_plugins()
        _discovered_plugins = plugins


def _category_rank(spec: TaskSpec) -> tuple[int, str]:
    return (CATEGORIES.index(spec.category) if spec.category in CATEGORIES else len(CATEGORIES), spec.category)


def all_tasks() -> list[TaskSpec]:
    """Every registered task: by SCBench's category order (other categories after), then by name."""
    _discover()
    return sorted(TASKS.values(), key=lambda spec: (_category_rank(spec), spec.name))


def task_names() -> list[str]:
    return [spec.name for spec in all_tasks()]


def unknown(kind: str, value: str, valid: list[str] | tuple[str, ...]) -> UsageError:
    close = difflib.get_close_matches(value, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return UsageError(f"unknown {kind} '{value}'.{hint} Valid: {', '.join(valid)}")


def get_task(name: str) -> TaskSpec:
    """A task by its name ("kv") or its hub config ("scbench_kv")."""
    tasks = all_tasks()
    for spec in tasks:
        if name in (spec.name, spec.config):
            return spec
    raise unknown("task", name, [spec.name for spec in tasks])


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
    """The task's program for `mode`, as an `@sgl.function` with the task bound (imports SGLang)."""
    from programs.base import PROGRAMS

    spec = get_task(task)
    return PROGRAMS[check_mode(mode)].bind(task=spec)

"""What the benchmarks' command lines share: output folders, checked comma lists, method lists.

Nothing heavy is imported here, so every benchmark's `--help` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from programs.spec import MODES
from runtime.model import EMBEDDED_MODEL

REPO = Path(__file__).resolve().parent.parent
EMBEDDED = EMBEDDED_MODEL

__all__ = ["EMBEDDED", "MODES", "REPO", "choice_list", "default_out", "resolve_method_list"]


def default_out(name: str) -> Path:
    return Path("runs") / "benchmarks" / name


def choice_list(value: str, valid: Sequence[str], flag: str) -> tuple[str, ...]:
    """A comma-separated option checked against its choices; exits with one line naming the bad
    entry and what is accepted."""
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    for item in items:
        if item not in valid:
            raise SystemExit(f"{flag}: unknown value {item!r}; valid: {', '.join(valid)}")
    return items


def resolve_method_list(names: Sequence[str], method_args: Sequence[str]) -> dict[str, Any]:
    """{name: method instance} for names like `snapkv` or `full@kvm` (`full` on the project's `kvm`
    backend) with shared `--method-arg` settings (each applies to the methods that have the field).
    Raises ValueError on bad input."""
    from kvmethods.registry import parse_methods

    for name in names:
        if name.partition("@")[2] not in ("", "kvm"):
            raise ValueError(f"{name!r}: the only backend suffix is @kvm (e.g. full@kvm)")
    bases = tuple(dict.fromkeys(n.partition("@")[0] for n in names))
    parsed = dict(zip(bases, parse_methods(bases, tuple(method_args))))
    return {name: parsed[name.partition("@")[0]] for name in names}

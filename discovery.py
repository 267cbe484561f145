"""Task and KV-method modules are found, not listed.

A registry imports every module of its own package (`import_package`), then the modules named in
`SCBENCH_PLUGINS` (`import_plugins`), so research code adds a task or a method as one module of its
own: `SCBENCH_PLUGINS=mylab.tasks.needle,mylab.methods.h2o`. Importing a module registers what it
defines (`programs.register_task`, `kvmethods.register`). The variable reaches the SGLang server
processes a bench starts (`flashinfer_ext.server_settings` passes it on), where the `kvm` backend
rebuilds the method by name, so the plugin must be importable there too (e.g. on PYTHONPATH).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Iterable

from errors import UsageError

PLUGINS_ENV = "SCBENCH_PLUGINS"

__all__ = ["PLUGINS_ENV", "import_package", "import_plugins", "plugin_env", "plugin_modules"]


def plugin_modules() -> tuple[str, ...]:
    """The modules `SCBENCH_PLUGINS` names (comma-separated), in order."""
    raw = os.environ.get(PLUGINS_ENV, "")
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def plugin_env() -> dict[str, str]:
    """The variable as a server's environment should carry it (empty when unset)."""
    modules = plugin_modules()
    return {PLUGINS_ENV: ",".join(modules)} if modules else {}


def import_package(package: str, skip: Iterable[str] = ()) -> None:
    """Imports every direct module of `package` except the names in `skip`."""
    root = importlib.import_module(package)
    skipped = set(skip)
    for info in pkgutil.iter_modules(root.__path__):
        if not info.ispkg and info.name not in skipped and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def import_plugins() -> tuple[str, ...]:
    """Imports the modules `SCBENCH_PLUGINS` names; returns them. A module that cannot be imported
    is a usage error naming it and why."""
    modules = plugin_modules()
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise UsageError(f"{PLUGINS_ENV}: cannot import {name!r} ({type(err).__name__}: {err})") from err
    return modules

"""Lets the real SGLang runtime start on a CPU-only machine, in every process it spawns.

Installed as a `.pth` hook (see pyproject.toml), so `install()` runs at every interpreter start in the
environment, including SGLang's scheduler and detokenizer subprocesses. It must stay cheap (stdlib
only, nothing imported eagerly) and harmless:

- `sgl_kernel`: only when `SGLANG_USE_CPU_ENGINE=1` (set by the managed server for `--device cpu`),
  so on GPU machines it is a no-op. SGLang's CPU engine imports two helpers from it at module level, but the PyPI wheel
  is CUDA-only. A fallback module is served only when no real `sgl_kernel` can be found (the finder
  sits last on `sys.meta_path`, after the normal path finder).
- `torchvision`: the PyPI wheel next to a CPU torch build can fail to load its compiled ops, and then
  dies at import on `torchvision::nms`. When that library cannot load, the op schemas are defined
  first so the pure-Python parts (the only ones SGLang touches) import. Where the library loads
  (any working install, GPU or CPU) this does nothing, so it is active in every process.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_FALLBACK_KERNEL = "sglang_cpu_compat.sgl_kernel_fallback"


def cpu_engine_requested() -> bool:
    return os.environ.get("SGLANG_USE_CPU_ENGINE", "0") == "1"


class _FallbackFinder(importlib.abc.MetaPathFinder):
    """Resolves `sgl_kernel` to the fallback module."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "sgl_kernel":
            # Reached only when no earlier finder found a real sgl_kernel.
            fallback = importlib.util.find_spec(_FALLBACK_KERNEL)
            return importlib.util.spec_from_file_location("sgl_kernel", fallback.origin)
        return None


class _TorchvisionGuard(importlib.abc.MetaPathFinder):
    """Runs before torchvision's own import and defines its op schemas if its C library is broken."""

    _done = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision" or _TorchvisionGuard._done:
            return None
        _TorchvisionGuard._done = True
        from sglang_cpu_compat.torchvision_ops import define_missing_schemas

        define_missing_schemas()
        return None  # let the normal finders import the real package


def install() -> None:
    """Idempotent; called from the .pth hook at interpreter start."""
    if not any(isinstance(f, _TorchvisionGuard) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionGuard())
    if cpu_engine_requested() and not any(isinstance(f, _FallbackFinder) for f in sys.meta_path):
        sys.meta_path.append(_FallbackFinder())

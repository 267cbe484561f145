"""Defines torchvision's two op schemas that its Python code needs when its C library cannot load.

torchvision's `_meta_registrations.py` registers fake kernels for `torchvision::nms` and `::qnms`
unconditionally; when `_C.so` does not match the installed torch (the PyPI wheel next to a CPU
build), those ops do not exist and `import torchvision` dies. SGLang only uses torchvision's
pure-Python transforms, so declaring the schemas is enough.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
# The library object must outlive this call, or torch drops the definitions again.
_library = None


def define_missing_schemas() -> None:
    global _library
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or _library is not None:
        return
    import torch

    for lib_path in sorted(Path(spec.origin).parent.glob("_C*.so")):
        try:
            torch.ops.load_library(str(lib_path))
        except (OSError, RuntimeError):
            continue
        if hasattr(torch.ops.torchvision, "nms"):
            return  # the compiled library works; nothing to define
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        _library.define(schema)

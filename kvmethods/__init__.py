"""KV-cache methods as small policies (one file and one frozen dataclass each), pure torch.

    from kvmethods import get_method, parse_method, from_dict, method_names
    m = parse_method("minference+snapkv", ["budget=2048"])   # SnapKV budget; minference.budget=...
    m.phases, m.stateful                                     # capabilities, not class names
    plan = m.prefill_plan(q, k, layer=0, num_layers=32)      # kvmethods.plan.SparsePlan
    out, lse = kvmethods.torch_executor.attend(q, k, v, plan, scale=d ** -0.5)

Families (see `kvmethods.base`): sparse prefill (a_shape, tri_shape, minference, flexprefill),
KV dropping (streamingllm, snapkv, pyramidkv), KV quantization (kivi, fp8), KV retrieval (quest),
baseline (full).
"""

from __future__ import annotations

from kvmethods import (  # noqa: F401  (importing a method module registers it)
    a_shape,
    flexprefill,
    fp8,
    full,
    kivi,
    minference,
    pyramidkv,
    quest,
    snapkv,
    streamingllm,
    tri_shape,
)
from kvmethods.base import PHASES, DropMethod, KVMethod, QuantMethod, SparsePrefillMethod
from kvmethods.composite import Composite
from kvmethods.plan import SparsePlan
from kvmethods.registry import METHODS, from_dict, get_method, method_names, parse_method, register

__all__ = [
    "METHODS",
    "PHASES",
    "Composite",
    "DropMethod",
    "KVMethod",
    "QuantMethod",
    "SparsePlan",
    "SparsePrefillMethod",
    "from_dict",
    "get_method",
    "method_names",
    "parse_method",
    "register",
]

"""KV-cache methods as small policies (one file and one frozen dataclass each), pure torch.

    from kvmethods import get_method, parse_method, from_dict, method_names
    m = parse_method("minference+snapkv", ["budget=2048"])   # SnapKV budget; minference.budget=...
    m.phases, m.stateful                                     # capabilities, not class names
    plan = m.prefill_plan(q, k, layer=0, num_layers=32)      # kvmethods.plan.SparsePlan
    out, lse = kvmethods.torch_executor.attend(q, k, v, plan, scale=d ** -0.5)

Families (see `kvmethods.base`): sparse prefill (a_shape, tri_shape, minference, flexprefill),
KV dropping (streamingllm, snapkv, pyramidkv), KV quantization (kivi, fp8), KV retrieval (quest),
baseline (full).

Adding a method: one module in `kvmethods/` (or one named in `SCBENCH_PLUGINS`) with a dataclass
decorated `@register("name")`; the registry finds it (`kvmethods.registry.discover`).
"""

from __future__ import annotations

from kvmethods.base import PHASES, DropMethod, KVMethod, QuantMethod, SparsePrefillMethod
from kvmethods.composite import Composite
from kvmethods.plan import SparsePlan
from kvmethods.registry import (
    METHODS,
    discover,
    from_dict,
    get_method,
    method_names,
    parse_method,
    parse_methods,
    register,
)
from kvmethods.server_needs import ServerNeeds

discover()  # `METHODS` holds every method once the package is imported

__all__ = [
    "METHODS",
    "PHASES",
    "Composite",
    "DropMethod",
    "KVMethod",
    "QuantMethod",
    "SparsePlan",
    "SparsePrefillMethod",
    "ServerNeeds",
    "discover",
    "from_dict",
    "get_method",
    "method_names",
    "parse_method",
    "parse_methods",
    "register",
]

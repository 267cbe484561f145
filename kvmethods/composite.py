"""A sparse-prefill method combined with a KV method ("minference+snapkv", "a_shape+kivi", ...).

The prefill method plans the context's prefill; the KV method does everything else (compression
after that prefill, selection at follow-up extends and decode, quantization). Capabilities are the
union of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kvmethods.base import KVMethod, is_context_prefill
from kvmethods.plan import SparsePlan
from kvmethods.server_needs import ServerNeeds

__all__ = ["Composite"]


@dataclass(frozen=True)
class Composite:
    """prefill: a method whose family is "sparse_prefill"; kv: a KV dropping / quantization /
    retrieval method. Its name is "<prefill.name>+<kv.name>"."""

    prefill: KVMethod
    kv: KVMethod

    family = "composite"

    def __post_init__(self) -> None:
        from kvmethods.registry import METHODS

        prefill_names = sorted(n for n, c in METHODS.items() if c.family == "sparse_prefill")
        kv_names = sorted(n for n, c in METHODS.items() if c.family not in ("sparse_prefill", "baseline"))
        if not isinstance(self.prefill, KVMethod) or self.prefill.family != "sparse_prefill":
            raise ValueError(
                f"Cannot compose {self._names()}: the first method must be a sparse-prefill method "
                f"({', '.join(prefill_names)})"
            )
        if not isinstance(self.kv, KVMethod) or self.kv.family in ("sparse_prefill", "baseline"):
            raise ValueError(
                f"Cannot compose {self._names()}: the second method must be a KV method ({', '.join(kv_names)})"
            )

    def _names(self) -> str:
        return "+".join(getattr(m, "name", type(m).__name__) for m in (self.prefill, self.kv))

    # -- capabilities ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"{self.prefill.name}+{self.kv.name}"

    @property
    def label(self) -> str:
        return self.name

    @property
    def phases(self) -> frozenset[str]:
        return self.prefill.phases | self.kv.phases

    @property
    def stateful(self) -> bool:
        return self.prefill.stateful or self.kv.stateful

    @property
    def uses_budget(self) -> bool:
        return self.prefill.uses_budget or self.kv.uses_budget

    @property
    def budget(self) -> int:
        """The KV method's budget when it uses one, else the prefill method's."""
        return self.kv.budget if self.kv.uses_budget else self.prefill.budget

    def server_needs(self, device: str) -> ServerNeeds:
        """Both parts run on the `kvm` backend (the sparse prefill needs it): the larger of their
        page sizes, whole prefills if either needs them."""
        prefill, kv = (part.server_needs(device).on_kvm() for part in (self.prefill, self.kv))
        return ServerNeeds(page_size=max(prefill.page_size, kv.page_size),
                           whole_prefill=prefill.whole_prefill or kv.whole_prefill)

    # -- serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.name, "prefill": self.prefill.to_dict(), "kv": self.kv.to_dict()}

    def replace(self, **changes: Any) -> Composite:
        """Unqualified fields go to the KV method when it has them, else to the prefill method."""
        kv_changes = {k: v for k, v in changes.items() if k in self.kv.field_names()}
        rest = {k: v for k, v in changes.items() if k not in kv_changes}
        return Composite(self.prefill.replace(**rest) if rest else self.prefill, self.kv.replace(**kv_changes))

    # -- hooks -----------------------------------------------------------------------------------

    def prefill_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        """The prefill method plans the context's prefill; an extend it leaves dense (a follow-up
        over the cached context) goes to the KV method, which may select there (Quest does)."""
        plan = self.prefill.prefill_plan(q, k, layer=layer, num_layers=num_layers)
        if plan.is_full and not is_context_prefill(q.shape[0], k.shape[0]):
            return self.kv.prefill_plan(q, k, layer=layer, num_layers=num_layers)
        return plan

    def decode_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        return self.kv.decode_plan(q, k, layer=layer, num_layers=num_layers)

    def compress(
        self, q_window: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1
    ) -> torch.Tensor:
        return self.kv.compress(q_window, k, layer=layer, num_layers=num_layers)

    def quantize_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.kv.quantize_kv(k, v)

    def __getattr__(self, attr: str) -> Any:
        """Method-specific helpers (e.g. Quest's `select_pages`) come from the KV method."""
        if attr.startswith("_") or attr in ("prefill", "kv"):
            raise AttributeError(attr)
        return getattr(self.kv, attr)

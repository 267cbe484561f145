"""Full attention: the baseline every method is compared against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kvmethods.base import KVMethod
from kvmethods.registry import register
from kvmethods.server_needs import NATIVE, ServerNeeds


@register("full")
@dataclass(frozen=True)
class Full(KVMethod):
    """Full (dense causal) attention, "Attention Is All You Need" (https://arxiv.org/abs/1706.03762).

    Fields:
        budget (4096): unused; accepted so budget sweeps can include the baseline.
    """

    uses_budget: ClassVar[bool] = False

    def server_needs(self, device: str) -> ServerNeeds:
        """SGLang's own attention backend: the runtime as it ships is the baseline."""
        return ServerNeeds(backend=NATIVE)

"""Method state indexed by physical KV slot, so radix-shared slots share their state.

SGLang shares physical KV slots between requests with a common prefix. Keeping a KV method's
decisions (which keys stay visible, which K/V are read quantized) per slot, not per request, makes
a decision taken once on the shared context apply to every fork and turn that reuses it. Writing a
slot resets its state: a freed slot reused for another sequence must not inherit the old decision,
and a token written after the context's prefill (a decode step, a later turn) starts visible and in
full precision.
"""

from __future__ import annotations

import torch


class SlotState:
    """visible[layer, slot, head]: whether the key in `slot` may be attended to by `head`.

    The heads are the KV heads, or the query heads for a method that selects per query head
    (`KVMethod.state_heads`). With `quantization_marks`, also quantized[layer, slot, 0 | 1]: whether
    the key | value in `slot` is read quantized (a quantization method of scope "context" marks the
    context prefill's slots)."""

    def __init__(
        self,
        num_layers: int,
        num_slots: int,
        num_heads: int,
        device: str | torch.device = "cpu",
        *,
        quantization_marks: bool = False,
    ):
        # On the pool's device: slot indices come from SGLang's tensors there.
        self.visible = torch.ones(num_layers, num_slots, num_heads, dtype=torch.bool, device=device)
        self.quantized = (
            torch.zeros(num_layers, num_slots, 2, dtype=torch.bool, device=device) if quantization_marks else None
        )

    @property
    def num_heads(self) -> int:
        return self.visible.shape[2]

    def reset(self, layer: int, slots: torch.Tensor) -> None:
        """Slots just written hold fresh KV: visible and in full precision until a method decides
        otherwise."""
        self.visible[layer, slots.long()] = True
        if self.quantized is not None:
            self.quantized[layer, slots.long()] = False

    def visibility(self, layer: int, slots: torch.Tensor) -> torch.Tensor:
        """bool[heads, L] for a request's slots [L] in position order; bool[B, heads, L] for
        a batch's slots [B, L]."""
        rows = self.visible[layer].index_select(0, slots.long().flatten())
        return rows.view(*slots.shape, -1).movedim(-1, -2)

    def set_visibility(self, layer: int, slots: torch.Tensor, keep: torch.Tensor) -> None:
        """Record a compression: `keep` is bool[heads, len(slots)] (per-KV-head rows are given to
        every query head of the group when the state is per query head)."""
        if keep.shape[0] != self.num_heads:
            if self.num_heads % keep.shape[0]:
                raise ValueError(f"keep mask has {keep.shape[0]} heads, the slot state {self.num_heads}")
            keep = keep.repeat_interleave(self.num_heads // keep.shape[0], dim=0)
        self.visible[layer, slots.long()] = keep.T.to(device=self.visible.device, dtype=torch.bool)

    def quantized_marks(self, layer: int, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, values): bool[L] each, whether a request's slots [L] are read quantized."""
        rows = self._marks().select(0, layer).index_select(0, slots.long())
        return rows[:, 0], rows[:, 1]

    def mark_quantized(self, layer: int, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Record which of `slots` [L] have their key / value (bool[L] each) read quantized."""
        marks = torch.stack([keys, values], dim=1).to(device=self.visible.device, dtype=torch.bool)
        self._marks()[layer, slots.long()] = marks

    def _marks(self) -> torch.Tensor:
        if self.quantized is None:
            raise ValueError("this slot state keeps no quantization marks (made without quantization_marks=True)")
        return self.quantized

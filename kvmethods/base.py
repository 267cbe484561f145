"""The method base class, the family base classes, and the attention statistics they share.

Every method is a frozen dataclass (one file each) with SCBench's defaults as field defaults and a
common `budget` knob. Runners ask capabilities, never class names:

- `phases` (subset of {"prefill", "compress", "decode", "store"}): which hooks do real work;
- `stateful`: whether the method keeps state across forward passes (per KV slot or page, or the
  stored KV itself), so a runner must keep it per physical slot and reset it on writes;
- `uses_budget`: whether `budget` changes anything (budget sweeps can skip the others);
- `server_needs(device)`: what the SGLang server that runs it must provide (`ServerNeeds`: the
  attention backend, whole prefills, the KV page size, SGLang's KV cache dtype).

Hooks (all tensors CPU or device, shapes documented per hook), each a no-op in the base class:

- `prefill_plan(q, k, *, layer, num_layers) -> SparsePlan`  q [q_len, Hq, D], k [kv_len, Hkv, D]
- `decode_plan(q, k, *, layer, num_layers) -> SparsePlan`   the same at decode (q_len usually 1)
- `compress(q_window, k, *, layer, num_layers) -> bool [H, kv_len]` keep mask over the context
- `quantize_kv(k, v) -> (k, v)` dequantized K/V, same shapes and dtypes

Heads: with GQA (Hq query heads on Hkv KV heads) a method that selects keys per head does so per
query head by default, as SCBench does (it repeats K/V to every query head before compressing or
searching patterns: Hq x budget keys kept); `heads="kv"` selects once per KV head from the
group-averaged scores instead (kvpress' choice: Hkv x budget kept). Plans and keep masks are then
indexed by query heads (H = Hq) or KV heads (H = Hkv); `state_heads` tells a runner which.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from kvmethods.plan import SparsePlan
from kvmethods.server_needs import ServerNeeds

__all__ = [
    "HEADS",
    "PHASES",
    "HeadSelection",
    "KVMethod",
    "SparsePrefillMethod",
    "DropMethod",
    "QuantMethod",
    "is_context_prefill",
    "check_qk",
    "last_query_probs",
    "slash_scores",
]

PHASES = frozenset({"prefill", "compress", "decode", "store"})
HEADS = ("query", "kv")
_HINTS: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def check_qk(q: torch.Tensor, k: torch.Tensor, what: str = "q") -> tuple[int, int, int, int, int]:
    """Validate q [q_len, Hq, D] and k [kv_len, Hkv, D]; returns (q_len, Hq, D, kv_len, Hkv)."""
    if q.dim() != 3 or k.dim() != 3:
        raise ValueError(
            f"expected {what} [q_len, num_q_heads, head_dim] and k [kv_len, num_kv_heads, head_dim], "
            f"got {what} {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    q_len, hq, d = q.shape
    kv_len, hkv, dk = k.shape
    if d != dk or hkv < 1 or hq % hkv:
        raise ValueError(
            f"{what} {tuple(q.shape)} and k {tuple(k.shape)} need the same head_dim and num_q_heads "
            "divisible by num_kv_heads"
        )
    if q_len > kv_len:
        raise ValueError(f"{what} has {q_len} rows but k only {kv_len} keys; k must include the queries' own keys")
    return q_len, hq, d, kv_len, hkv


def last_query_probs(
    q_last: torch.Tensor, k: torch.Tensor, scale: float | None = None, *, per_query_head: bool = False
) -> torch.Tensor:
    """Softmax attention of the last queries over all keys, per query head or averaged over each
    KV head's query group.

    q_last [w, Hq, D] are the queries at positions kv_len - w .. kv_len - 1 (causal within
    themselves); k [kv_len, Hkv, D]. Returns float32 [Hq, w, kv_len] with `per_query_head` (K
    repeated to every query head, as SCBench does), else [Hkv, w, kv_len] (the group mean), on
    q_last's device; each row sums to 1.
    """
    w, hq, d = q_last.shape
    kv_len, hkv, _ = k.shape
    g = hq // hkv
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    qh = q_last.float().view(w, hkv, g, d).permute(1, 2, 0, 3).reshape(hkv, g * w, d)
    logits = torch.bmm(qh, k.float().permute(1, 2, 0)).mul_(scale).view(hkv, g, w, kv_len)
    pos = kv_len - w + torch.arange(w, device=q_last.device)
    logits.masked_fill_(torch.arange(kv_len, device=q_last.device)[None, :] > pos[:, None], float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return probs.reshape(hkv * g, w, kv_len) if per_query_head else probs.mean(dim=1)


def slash_scores(probs: torch.Tensor) -> torch.Tensor:
    """Attention mass per diagonal offset: out[h, o] = sum_r probs[h, r, p_r - o].

    probs [H, w, kv_len] from `last_query_probs` (row r at position p_r = kv_len - w + r).
    Returns float32 [H, kv_len] indexed by offset o = p - kv_idx >= 0.
    """
    h, w, kv_len = probs.shape
    pos = kv_len - w + torch.arange(w, device=probs.device)
    offs = pos[:, None] - torch.arange(kv_len, device=probs.device)[None, :]  # [w, kv_len]
    valid = offs >= 0
    out = torch.zeros(h, kv_len, dtype=torch.float32, device=probs.device)
    src = (probs.float() * valid).reshape(h, -1)
    out.scatter_add_(1, offs.clamp(min=0).reshape(1, -1).expand(h, -1), src)
    return out


@dataclass(frozen=True)
class KVMethod:
    """Base of every method: full attention semantics, validation, serialisation.

    Fields:
        budget (4096): the common knob; each family says what it means.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "baseline"
    phases: ClassVar[frozenset[str]] = frozenset()
    stateful: ClassVar[bool] = False
    uses_budget: ClassVar[bool] = True

    budget: int = 4096

    def __post_init__(self) -> None:
        for fname, ftype in _field_types(type(self)).items():
            value = getattr(self, fname)
            if ftype is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, fname, float(value))
            elif not isinstance(value, ftype) or (ftype is int and isinstance(value, bool)):
                raise ValueError(
                    f"{self.label}.{fname}: expected {ftype.__name__}, got {type(value).__name__} {value!r}"
                )
        self._check_range("budget", lo=1)

    # -- validation helpers ----------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    def _check_range(self, fname: str, lo: float | None = None, hi: float | None = None) -> None:
        value = getattr(self, fname)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else (f"<= {hi}" if lo is None else f"in [{lo}, {hi}]")
            raise ValueError(f"{self.label}.{fname} must be {bound}, got {value}")

    def _require(self, ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"{self.label}: {message}")

    # -- serialisation ---------------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def field_types(cls) -> dict[str, type]:
        return dict(_field_types(cls))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: {"method": name, field: value, ...}; `kvmethods.from_dict` inverts it."""
        return {"method": self.name, **{f: getattr(self, f) for f in self.field_names()}}

    def replace(self, **changes: Any) -> KVMethod:
        return dataclasses.replace(self, **changes)

    # -- hooks (no-ops: full attention, keep everything, exact KV) -------------------------------

    def prefill_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        """q [q_len, Hq, D] (this extend), k [kv_len, Hkv, D] (cached prefix + this extend)."""
        q_len, _, _, kv_len, hkv = check_qk(q, k)
        return SparsePlan.full(q_len, kv_len, hkv)

    def decode_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        """q [q_len, Hq, D] (usually q_len = 1), k [kv_len, Hkv, D]."""
        q_len, _, _, kv_len, hkv = check_qk(q, k)
        return SparsePlan.full(q_len, kv_len, hkv)

    def compress(
        self, q_window: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1
    ) -> torch.Tensor:
        """bool [Hkv, kv_len] keep mask over the context; the base keeps everything."""
        check_qk(q_window, k, "q_window")
        return torch.ones(k.shape[1], k.shape[0], dtype=torch.bool)

    def quantize_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v [kv_len, Hkv, D] -> the values attention will read (identity here)."""
        return k, v

    def state_heads(self, num_q_heads: int, num_kv_heads: int) -> int:
        """Heads a runner keeps per-slot state (visibility) for: the KV heads unless the method
        selects per query head."""
        return num_kv_heads

    # -- what the server must provide ------------------------------------------------------------

    def server_needs(self, device: str) -> ServerNeeds:
        """The `kvm` backend runs the method, each context prefill in one step, pages of one token."""
        return ServerNeeds()


@dataclass(frozen=True)
class HeadSelection:
    """Mixin of the methods that select keys per head (see the module docstring's "Heads").

    SCBench repeats K/V to every query head before a KV cache compresses them
    (minference/modules/kvcompression.py, `BaseKVCache.update`), so each query head selects its
    own keys; NVIDIA kvpress scores per query head and averages the scores over each KV head's
    query group before selecting once per KV head.

    Fields:
        heads ("query"): "query", one selection per query head (SCBench: Hq x budget kept);
            "kv", one per KV head from scores averaged over its query group (kvpress: Hkv x budget).
    """

    heads: str = "query"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.heads not in HEADS:
            raise ValueError(f"{self.label}.heads must be one of {', '.join(HEADS)}, got {self.heads!r}")

    @property
    def per_query_head(self) -> bool:
        return self.heads == "query"

    def selection_heads(self, num_q_heads: int, num_kv_heads: int) -> int:
        return num_q_heads if self.per_query_head else num_kv_heads

    def state_heads(self, num_q_heads: int, num_kv_heads: int) -> int:
        return self.selection_heads(num_q_heads, num_kv_heads)


FOLLOW_UPS = ("dense", "sparse")


def is_context_prefill(q_len: int, kv_len: int) -> bool:
    """An extend that brings more new tokens than it finds cached: the shared context's first
    prefill (a short cached prefix, such as a chat header, does not change that). Later turns and
    questions extend a longer cached context."""
    return q_len > kv_len - q_len


@dataclass(frozen=True)
class SparsePrefillMethod(KVMethod):
    """Sparse prefill: each prefill row attends to a subset of keys; decode is dense; no state.

    `budget` is the number of keys a row attends to (sink + local window for static patterns).
    As in SCBench, only the context's prefill is sparse (`is_context_prefill`): an extend over a
    cached context (a later turn, every multi-request question) runs dense, as SCBench's HF path
    (minference/modules/forward.py: the prefill kernel only when the query fills the whole cache)
    and its vLLM path (`forward_prefix` whenever blocks are cached) do. SCBench would also run an
    extend behind a short cached prefix (a chat header shared with another request) densely; here
    it stays the context's prefill, and the bench gives every session its own radix namespace so
    a context's prefill normally has no cached prefix at all. `follow_ups="sparse"` plans the
    follow-up extends too. Subclasses implement `_plan` for prefills with at least one row.
    """

    family: ClassVar[str] = "sparse_prefill"
    phases: ClassVar[frozenset[str]] = frozenset({"prefill"})
    stateful: ClassVar[bool] = False

    follow_ups: str = "dense"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._require(
            self.follow_ups in FOLLOW_UPS, f"follow_ups must be one of {', '.join(FOLLOW_UPS)}, got {self.follow_ups!r}"
        )

    def prefill_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        q_len, _, _, kv_len, hkv = check_qk(q, k)
        if q_len == 0 or (self.follow_ups == "dense" and not is_context_prefill(q_len, kv_len)):
            return SparsePlan.full(q_len, kv_len, hkv)
        return self._plan(q, k, layer=layer, num_layers=num_layers)

    def _plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int, num_layers: int) -> SparsePlan:
        raise NotImplementedError


@dataclass(frozen=True)
class DropMethod(HeadSelection, KVMethod):
    """KV dropping: after the context prefill, all but `budget` keys per head become invisible.

    `compress` returns a keep mask [H, kv_len] on k's device (H = query heads, or KV heads with
    heads="kv") with exactly `layer_budget(...)` True entries per head when the context is longer
    than that, else all True (SCBench leaves a prefill shorter than its capacity uncompressed, and
    one of exactly that length keeps every key). Subclasses implement `_keep`.
    """

    family: ClassVar[str] = "kv_dropping"
    phases: ClassVar[frozenset[str]] = frozenset({"compress"})
    stateful: ClassVar[bool] = True

    def layer_budget(self, layer: int, num_layers: int, kv_len: int) -> int:
        """Keys kept per head in `layer` (the same in every layer unless a subclass says otherwise)."""
        return self.budget

    def compress(
        self, q_window: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1
    ) -> torch.Tensor:
        check_qk(q_window, k, "q_window")
        if q_window.shape[0] < 1:
            raise ValueError(f"{self.label}.compress needs at least one query row in q_window")
        if not 0 <= layer < max(num_layers, 1):
            raise ValueError(f"{self.label}.compress: layer must be in [0, num_layers={num_layers}), got {layer}")
        kv_len = k.shape[0]
        heads = self.selection_heads(q_window.shape[1], k.shape[1])
        n = self.layer_budget(layer, num_layers, kv_len)
        if kv_len <= n:
            return torch.ones(heads, kv_len, dtype=torch.bool, device=k.device)
        return self._keep(q_window, k, n, layer=layer, num_layers=num_layers)

    def _keep(self, q_window: torch.Tensor, k: torch.Tensor, n: int, *, layer: int, num_layers: int) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class QuantMethod(KVMethod):
    """KV quantization: attention reads quantized (quantize -> dequantize) K/V; it stays dense.

    Which tokens attention reads quantized is the method's `scope`:
    - "stored": every token read back from the KV pool, whenever it was written (a quantized KV
      cache, e.g. FP8); the tokens an extend brings are attended in full precision by that extend.
    - "context": the tokens of the context's prefill (`is_context_prefill`), as
      `context_split(seq_len)` divides them; every token written later (decoded tokens, a later
      turn, a question over a shared context) stays in full precision. A runner marks the
      context's slots when its prefill's attention is done (KIVI as SCBench runs it).

    Hooks: `quantize_where(k, v, keys, values)` quantizes where the bool[kv_len] masks say;
    `quantize_kv(k, v)` is K/V as attention reads them after a context prefill of exactly these
    tokens (`context_split` of their length).
    """

    family: ClassVar[str] = "kv_quantization"
    phases: ClassVar[frozenset[str]] = frozenset({"store"})
    stateful: ClassVar[bool] = True
    uses_budget: ClassVar[bool] = False
    scope: ClassVar[str] = "stored"

    def context_split(self, seq_len: int) -> tuple[int, int]:
        """(key_end, value_end): a context prefill of `seq_len` tokens leaves keys [0, key_end)
        and values [0, value_end) quantized. Everything, unless a method keeps a residual."""
        return seq_len, seq_len

    def quantize_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v [kv_len, Hkv, D] -> what attention reads after a context prefill of these tokens."""
        self._check_kv(k, v)
        key_end, value_end = self.context_split(k.shape[0])
        pos = torch.arange(k.shape[0], device=k.device)
        return self.quantize_where(k, v, pos < key_end, pos < value_end)

    def quantize_where(
        self, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v [kv_len, Hkv, D]; keys, values bool [kv_len]: the positions read quantized.
        Returns K/V with the same shapes and dtypes, full precision where the masks are False."""
        raise NotImplementedError

    @staticmethod
    def _check_kv(k: torch.Tensor, v: torch.Tensor, *masks: torch.Tensor) -> None:
        if k.dim() != 3 or v.dim() != 3 or k.shape[:2] != v.shape[:2]:
            raise ValueError(
                f"quantize_kv expects k, v [kv_len, num_kv_heads, head_dim] with matching first two dims, "
                f"got {tuple(k.shape)} and {tuple(v.shape)}"
            )
        if any(m.shape != (k.shape[0],) or m.dtype != torch.bool for m in masks):
            raise ValueError(
                f"quantize_where expects bool masks [{k.shape[0]}], got "
                + ", ".join(f"{m.dtype} {tuple(m.shape)}" for m in masks)
            )

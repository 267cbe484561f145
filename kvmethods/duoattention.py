"""DuoAttention: retrieval heads keep the whole cache, streaming heads only sinks + a recent window."""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from kvmethods.base import KVMethod, check_qk
from kvmethods.registry import register

log = logging.getLogger(__name__)

PATTERNS_DIR = Path(__file__).parent / "patterns" / "duoattention"
PATTERN_FILE = "full_attention_heads.tsv"
AUTO, PREFILL = "auto", "prefill"
# Served model names (the checkpoint directory's name, lower case) -> shipped pattern directory.
ALIASES = {"llama-3.1-8b-instruct": "Meta-Llama-3.1-8B-Instruct"}


def published_pattern(model_path: str) -> Path | None:
    """The shipped pattern for a served model, matched on the checkpoint's last path component
    (e.g. "meta-llama/Meta-Llama-3.1-8B-Instruct"), case-insensitively, or None."""
    name = Path(str(model_path).rstrip("/")).name.lower()
    name = ALIASES.get(name, name).lower()
    shipped = sorted(PATTERNS_DIR.iterdir()) if PATTERNS_DIR.is_dir() else []
    return next((d for d in shipped if d.name.lower() == name and (d / PATTERN_FILE).is_file()), None)


@functools.lru_cache(maxsize=16)
def load_pattern(path: str) -> torch.Tensor:
    """float [layers, Hkv] head scores from a pattern directory (its `full_attention_heads.tsv`) or a
    .tsv file, clipped to [0, 1] as duo-attention's `load_attn_pattern` does."""
    file = Path(path) / PATTERN_FILE if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise ValueError(f"duoattention: no pattern at {path} (a directory with {PATTERN_FILE}, or a .tsv file)")
    rows = [[float(x) for x in line.split("\t")] for line in file.read_text().splitlines() if line.strip()]
    if not rows or len({len(r) for r in rows}) != 1:
        raise ValueError(f"duoattention: {file} is not a layers x heads table of tab-separated numbers")
    return torch.tensor(rows, dtype=torch.float64).clamp(0, 1)


def retrieval_heads(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """bool, same shape: the heads that keep the full cache. duo-attention's
    `sparsify_attention_heads`: the `sparsity` quantile of the scores is the bar, heads at or above
    it are retrieval heads (sparsity 1: none, 0: all). The reference adds noise below 1e-6 to break
    ties at random; here equal scores at the bar are all retrieval heads."""
    if sparsity >= 1:
        return torch.zeros_like(scores, dtype=torch.bool)
    if sparsity <= 0:
        return torch.ones_like(scores, dtype=torch.bool)
    return scores >= torch.quantile(scores.double().flatten(), sparsity)


def window_mass(q_last: torch.Tensor, k: torch.Tensor, sink: int, recent: int) -> torch.Tensor:
    """float [Hkv]: per KV head, the largest share of attention (over its query group and the given
    rows) that falls outside the first `sink` and the last `recent` keys of each row's causal range.
    q_last [w, Hq, D] are the queries of the last w positions of k [kv_len, Hkv, D]. A head that
    attends far back is a retrieval head (the statistic `calibrate duoattention` and the "prefill"
    pattern score heads with)."""
    w, hq, d = q_last.shape
    kv_len, hkv, _ = k.shape
    logits = torch.einsum("whd,khd->hwk", q_last.float(), k.float().repeat_interleave(hq // hkv, dim=1)) / math.sqrt(d)
    pos = kv_len - w + torch.arange(w)[:, None]
    keys = torch.arange(kv_len)[None, :]
    logits.masked_fill_(keys > pos, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    far = (keys >= sink) & (keys <= pos - recent)  # [w, kv_len]
    return (probs * far).sum(-1).view(hkv, hq // hkv, w).amax(dim=(1, 2))


@register("duoattention")
@dataclass(frozen=True)
class DuoAttention(KVMethod):
    """DuoAttention, "DuoAttention: Efficient Long-Context LLM Inference with Retrieval and
    Streaming Heads" (https://arxiv.org/abs/2410.10819; code mit-han-lab/duo-attention).

    Each KV head has a score (a "pattern": the gate DuoAttention optimised on synthetic passkey
    retrieval, one row per layer, one column per KV head). The `sparsity` share of the heads with
    the lowest scores become streaming heads (`retrieval_heads`, duo-attention's
    `sparsify_attention_heads`); after the context's prefill a streaming head keeps only the first
    `sink` and the last `budget - sink` context keys, a retrieval head keeps all of them (as
    kvpress' DuoAttentionPress: compressed once at the context's prefill, tokens written later stay
    visible; duo-attention's own kernels also slide the streaming window during decoding). The
    selection is per KV head (Hkv masks, the same for the query group). A context of no more than
    `budget` keys is kept whole.

    Patterns (`pattern`):
    - "auto" (default): the published pattern of the served model (kvmethods/patterns/duoattention,
      matched on the checkpoint's name), else "prefill" with a warning;
    - a path: a directory holding full_attention_heads.tsv (duo-attention's layout, or what
      `cli.py calibrate duoattention` writes) or a .tsv file;
    - "prefill": no stored pattern; each layer scores its heads on the context's own prefill
      (`window_mass` of its last 32 queries) and applies `sparsity` within the layer.

    duo-attention's evaluation settings (README, scripts/longbench.sh): sink_size 64, recent_size
    256, sparsity 0.5 (its patterns were trained with sink 128, recent 256).

    Fields:
        budget (320): keys a streaming head keeps (sink + recent window).
        sink (64): attention-sink keys at the start that a streaming head keeps.
        sparsity (0.5): share of heads made streaming heads.
        pattern ("auto"): "auto", "prefill", or a pattern path (see above).
    """

    family: ClassVar[str] = "kv_dropping"
    phases: ClassVar[frozenset[str]] = frozenset({"compress"})
    stateful: ClassVar[bool] = True
    prefill_rows: ClassVar[int] = 32  # queries scored by the "prefill" pattern

    budget: int = 320
    sink: int = 64
    sparsity: float = 0.5
    pattern: str = AUTO

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("sink", lo=0)
        self._check_range("sparsity", lo=0.0, hi=1.0)
        self._require(self.budget > self.sink, f"budget ({self.budget}) must exceed sink ({self.sink})")
        self._require(bool(self.pattern), "pattern must be 'auto', 'prefill' or a path")

    def for_model(self, model_path: str) -> DuoAttention:
        """This method with "auto" resolved for the served model (the server calls it once)."""
        if self.pattern != AUTO:
            return self
        found = published_pattern(model_path)
        if found is None:
            log.warning("duoattention: no published pattern for %s; scoring heads on each prefill "
                        "(run `cli.py calibrate duoattention` for a stored one)", model_path)
            return self.replace(pattern=PREFILL)
        return self.replace(pattern=str(found))

    def head_scores(self, num_layers: int, num_kv_heads: int) -> torch.Tensor:
        """float [layers, Hkv] from the stored pattern."""
        if self.pattern in (AUTO, PREFILL):
            raise ValueError(f"duoattention: pattern {self.pattern!r} has no stored head scores")
        scores = load_pattern(self.pattern)
        if tuple(scores.shape) != (num_layers, num_kv_heads):
            raise ValueError(f"duoattention: pattern {self.pattern} is {tuple(scores.shape)}, the model has "
                             f"{num_layers} layers x {num_kv_heads} KV heads")
        return scores

    def retrieval_mask(self, num_layers: int, num_kv_heads: int) -> torch.Tensor:
        """bool [layers, Hkv]: the retrieval heads of the stored pattern."""
        return _retrieval_mask(self.pattern, self.sparsity, num_layers, num_kv_heads)

    def compress(
        self, q_window: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1
    ) -> torch.Tensor:
        """bool [Hkv, kv_len]: all keys for a retrieval head, sink + recent for a streaming head."""
        check_qk(q_window, k, "q_window")
        kv_len, hkv = k.shape[0], k.shape[1]
        keep = torch.ones(hkv, kv_len, dtype=torch.bool, device=k.device)
        if kv_len <= self.budget:
            return keep
        if self.pattern in (AUTO, PREFILL):
            rows = q_window[-self.prefill_rows :]
            retrieval = retrieval_heads(window_mass(rows, k, self.sink, self.budget - self.sink), self.sparsity)
        else:
            retrieval = self.retrieval_mask(num_layers, hkv)[layer]
        streaming = ~retrieval.to(k.device)
        keep[streaming, self.sink : kv_len - (self.budget - self.sink)] = False
        return keep


@functools.lru_cache(maxsize=16)
def _retrieval_mask(pattern: str, sparsity: float, num_layers: int, num_kv_heads: int) -> torch.Tensor:
    scores = DuoAttention(pattern=pattern).head_scores(num_layers, num_kv_heads)
    return retrieval_heads(scores, sparsity)

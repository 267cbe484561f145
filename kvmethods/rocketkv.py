"""RocketKV: coarse permanent eviction after the prefill, then hybrid sparse top-k attention at
every decode step; and RocketKV-MT, its multi-turn variant that never evicts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F

from kvmethods.base import KVMethod, check_qk
from kvmethods.plan import SparsePlan
from kvmethods.registry import register
from kvmethods.snapkv import repeat_kv


class RocketSettings(NamedTuple):
    """The per-sequence settings RocketKV derives from its token budget."""

    prompt_budget: int  # stage 1: keys kept per KV head after the prefill
    topk: int  # stage 2: keys attended per KV head at a decode step
    compression_ratio: float  # stage 2: sequence x head-dimension reduction of the approximation


def rocket_settings(seq_len: int, budget: int, max_new_tokens: int) -> RocketSettings:
    """RocketKV's split of `budget` between its stages for a sequence of `seq_len` tokens
    (context + generation), as its evaluation computes it (`infllm_utils.compress`): an overall
    compression c = seq_len / budget; stage 1 keeps seq_len / c^r tokens, r = min(0.2 + 0.06
    log2 c, 0.8) (at least min(2 max_new_tokens, seq_len)), less the tokens still to be generated;
    stage 2 attends budget / 2 keys and approximates with the remaining ratio."""
    c = max(1.0, float(seq_len) / budget)
    r = min(0.2 + math.log2(c) * 0.06, 0.8)
    capacity = int(float(seq_len) / (c**r))
    capacity = max(capacity, min(2 * max_new_tokens, seq_len))
    return RocketSettings(capacity - max_new_tokens, int(budget // 2), max(1.0, float(capacity) / budget))


def snap_keep(q: torch.Tensor, k: torch.Tensor, prompt_budget: int, window: int, kernel_size: int) -> torch.Tensor:
    """Stage 1, bool [Hkv, kv_len]: the keys RocketKV keeps after a prefill whose queries are q
    [q_len, Hq, D] over keys k [kv_len, Hkv, D] (kv_len > prompt_budget, else everything).

    SnapKV with RocketKV's choices: the last w = min(window, q_len) queries attend every key
    causally (in the queries' dtype); their probabilities to the keys before the window are summed
    over the window's rows and over each KV head's query group, max-pooled (`kernel_size`, stride
    1), and the top prompt_budget - w kept per KV head, with the window's own w keys."""
    q_len, hq, d = q.shape
    kv_len, hkv, _ = k.shape
    keep = torch.ones(hkv, kv_len, dtype=torch.bool, device=k.device)
    if kv_len <= prompt_budget:
        return keep
    w = min(window, q_len)
    query = q[-w:].transpose(0, 1)[None]  # [1, Hq, w, D]
    keys = repeat_kv(k.to(q.dtype).transpose(0, 1)[None], hq // hkv)  # [1, Hq, kv_len, D]
    causal = (torch.arange(w, device=q.device)[:, None] - torch.arange(kv_len, device=q.device)[None, :]
              + kv_len - w) >= 0
    score = torch.matmul(query, keys.transpose(-1, -2)) / math.sqrt(d)
    score = torch.softmax(score.masked_fill(~causal, float("-inf")), dim=-1).masked_fill(~causal, 0)
    score = score[:, :, :, : kv_len - w].sum(dim=-2).view(1, hkv, hq // hkv, kv_len - w).sum(dim=2)
    score = F.max_pool1d(score, kernel_size=kernel_size, padding=kernel_size // 2, stride=1)
    top = score[0].topk(prompt_budget - w, dim=-1).indices
    keep.zero_()
    keep[:, kv_len - w :] = True
    keep.scatter_(1, top, True)
    return keep


def hybrid_topk(q: torch.Tensor, keys: torch.Tensor, topk: int, compression_ratio: float) -> torch.Tensor:
    """Stage 2, int64 [Hkv, min(topk, n)]: the keys (indices into `keys`) each KV head attends at
    a decode step, chosen from approximate scores (RocketKV's hybrid sparse attention).

    q [1, Hq, D]; keys [Hkv, n, D], the keys the head may attend, in position order. Keys are
    multiplied by the sign of the group's summed query and max-pooled over chunks of
    ceil(sqrt(ratio)) consecutive keys (1 when that exceeds the ratio); the query's
    D * chunk / ratio largest components (|q| averaged over the group) score the chunks; the scores,
    spread back to the keys, go through a softmax scaled by sqrt(D * |q_hat|_1 / |q|_1), are
    averaged over the group, and the top `topk` keys are kept for the group."""
    _, hq, d = q.shape
    hkv, n, _ = keys.shape
    Q = q.transpose(0, 1).reshape(1, hkv, hq // hkv, 1, d)  # [B, Hkv, G, q_len, D]
    K = keys[None, :, None]  # [B, Hkv, 1, n, D]
    group_sum = Q.sum(dim=2, keepdim=True)
    sign = (group_sum > 0) + (~(group_sum > 0)) * -1
    max_key, positive_query = K * sign, Q * sign
    chunk = math.ceil(math.sqrt(compression_ratio))
    chunk = chunk if chunk <= compression_ratio else 1
    pad = chunk - ((n - 1) % chunk + 1)
    filler = torch.full((*max_key.shape[:3], pad, d), torch.finfo(max_key.dtype).min, dtype=max_key.dtype,
                        device=max_key.device)
    max_key = torch.cat([max_key, filler], dim=-2)
    chunk_max_key = max_key.reshape(*max_key.shape[:3], max_key.shape[3] // chunk, chunk, d).amax(dim=-2)
    r = max(1, int(d * chunk / compression_ratio))
    absQ = torch.abs(Q)
    i1 = torch.topk(absQ.mean(dim=2, keepdim=True), r, dim=-1).indices
    Q_hat = positive_query.gather(-1, i1.expand(*positive_query.shape[:-1], r))
    K_hat = chunk_max_key.gather(-1, i1.expand(*chunk_max_key.shape[:-1], r))
    QK_hat = Q_hat @ K_hat.transpose(-1, -2)
    QK_hat = QK_hat.unsqueeze(-1).repeat(1, 1, 1, 1, 1, chunk).reshape(*QK_hat.shape[:4], -1)[..., :n]
    scale = torch.sqrt(d * torch.abs(Q_hat).sum(dim=-1, keepdim=True) / absQ.sum(dim=-1, keepdim=True))
    s_hat = torch.softmax(QK_hat / scale, dim=-1)
    return torch.topk(s_hat.mean(dim=2, keepdim=True), min(topk, n), dim=-1).indices[0, :, 0, 0]


@register("rocketkv")
@dataclass(frozen=True)
class RocketKV(KVMethod):
    """RocketKV, "RocketKV: Accelerating Long-Context LLM Inference via Two-Stage KV Cache
    Compression" (Behnam et al., ICML 2025, https://arxiv.org/abs/2502.14051), as NVlabs/RocketKV
    implements it (`pipeline/inf_stream_llm/inf_llm/attention/rocket.py`, settings from
    `infllm_utils.compress`).

    - The context's prefill attends densely; then stage 1 evicts permanently: SnapKV with an
      observation window of `window` queries, max-pooling of `kernel_size`, scores summed over
      each KV head's query group, keeping `prompt_budget` keys per KV head (`snap_keep`).
    - Every decode step, stage 2: hybrid sparse attention over the keys left (those kept plus every
      later token): approximate scores from reduced sequence (chunk max) and head (top query
      components) dimensions pick `topk` keys per KV head, which the step attends exactly
      (`hybrid_topk`).
    - Later turns and questions over a compressed context attend densely to what is left, and
      their tokens are appended uncompressed. (RocketKV's code also re-runs stage 1 after every
      multi-token forward, squeezing kept keys + the new turn back to the prompt budget; here the
      context's slots may be shared by other requests' forks, so stage 1 runs once, on the
      context's prefill, as every dropping method here does.)

    The stages share `budget` as RocketKV does (`rocket_settings`): topk = budget / 2, and the
    prompt budget and compression ratio follow from the sequence length, taken as the current
    length plus `max_new_tokens` (the reference fixes it per sample from the context's length).
    One selection per KV head (the reference's), so the state is per KV head.

    Defaults: the reference's SCBench setting (window 128; 32 on its other benchmarks), kernel 63.

    Fields:
        budget (1024): RocketKV's token budget.
        window (128): stage 1 observation window (the last queries; their keys are always kept).
        kernel_size (63): stage 1 max-pooling kernel, odd.
        max_new_tokens (150): tokens a turn may generate (the split reserves room for them;
            SCBench's Retr.KV limit).
    """

    family: ClassVar[str] = "kv_retrieval"
    phases: ClassVar[frozenset[str]] = frozenset({"compress", "decode"})
    stateful: ClassVar[bool] = True
    # the backend hands `decode_plan_visible` the keys still visible (stage 2 runs over those)
    plans_on_visible: ClassVar[bool] = True

    budget: int = 1024
    window: int = 128
    kernel_size: int = 63
    max_new_tokens: int = 150

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_range("budget", lo=2)
        self._check_range("window", lo=1)
        self._check_range("kernel_size", lo=1)
        self._check_range("max_new_tokens", lo=0)
        self._require(self.kernel_size % 2 == 1, f"kernel_size must be odd, got {self.kernel_size}")

    def settings(self, kv_len: int) -> RocketSettings:
        return rocket_settings(kv_len + self.max_new_tokens, self.budget, self.max_new_tokens)

    def keep(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Stage 1's keep mask, bool [Hkv, kv_len], for an extend with queries q over keys k."""
        check_qk(q, k)
        # the reference asserts prompt_budget >= window; a short sequence keeps everything anyway
        budget = max(self.settings(k.shape[0]).prompt_budget, min(self.window, q.shape[0]))
        return snap_keep(q, k, budget, self.window, self.kernel_size)

    def compress(
        self, q_window: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1
    ) -> torch.Tensor:
        if q_window.shape[0] < 1:
            raise ValueError(f"{self.label}.compress needs at least one query row")
        return self.keep(q_window, k)

    def decode_plan(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> SparsePlan:
        return self.decode_plan_visible(q, k, None, layer=layer, num_layers=num_layers)

    def decode_plan_visible(
        self, q: torch.Tensor, k: torch.Tensor, visible: torch.Tensor | None, *, layer: int = 0, num_layers: int = 1
    ) -> SparsePlan:
        """Stage 2 at a decode step: q [1, Hq, D], k [kv_len, Hkv, D], visible bool [Hkv, kv_len]
        (None: every key) -> a plan whose KV heads attend their `topk` chosen keys."""
        q_len, _, d, kv_len, hkv = check_qk(q, k)
        if visible is None:
            visible = torch.ones(hkv, kv_len, dtype=torch.bool, device=k.device)
        visible = visible.to(k.device)
        counts = visible.sum(dim=1)
        s = self.settings(kv_len)
        if q_len != 1 or int(counts.max()) <= s.topk:  # a multi-row forward is a prefill: dense
            return SparsePlan.full(q_len, kv_len, hkv)
        if bool((counts == counts[0]).all()):
            idx = visible.nonzero()[:, 1].view(hkv, -1)  # row-major: each head's keys in order
            keys = k.transpose(0, 1).gather(1, idx[..., None].expand(-1, -1, d))
            chosen = idx.gather(1, hybrid_topk(q, keys, s.topk, s.compression_ratio))
        else:  # heads with different numbers of keys: one at a time
            g = q.shape[1] // hkv
            rows = []
            for h in range(hkv):
                idx = visible[h].nonzero()[:, 0]
                top = hybrid_topk(q[:, h * g : (h + 1) * g], k[idx, h][None], s.topk, s.compression_ratio)[0]
                rows.append(F.pad(idx[top], (0, s.topk - top.shape[0]), value=-1))
            chosen = torch.stack(rows)
        return SparsePlan(1, kv_len, hkv, vertical=chosen)


@register("rocketkv_mt")
@dataclass(frozen=True)
class RocketKVMT(RocketKV):
    """RocketKV-MT, RocketKV's multi-turn variant (https://arxiv.org/abs/2502.14051, NVlabs/RocketKV
    `pipeline/inf_stream_llm/inf_llm/attention/rocket_mt.py`): nothing is evicted. Every extend
    (the context's prefill, each later turn or question) attends the full cache densely and runs
    stage 1 over the full cache as a per-request selection (`turn_keep`); that request's decode
    steps run stage 2 over the keys it selected plus the tokens after its extend. The next turn
    selects again from everything, so a key dropped for one question can serve the next.

    Settings as RocketKV's (the prompt budget of each turn from its own length).

    Fields:
        budget (1024): RocketKV's token budget.
        window (128): stage 1 observation window (the extend's last queries; their keys are kept).
        kernel_size (63): stage 1 max-pooling kernel, odd.
        max_new_tokens (150): tokens a turn may generate (the split reserves room for them).
    """

    phases: ClassVar[frozenset[str]] = frozenset({"decode"})
    # the backend calls `turn_keep` at every extend and adds the result to that request's visibility
    selects_per_turn: ClassVar[bool] = True

    def turn_keep(self, q: torch.Tensor, k: torch.Tensor, *, layer: int = 0, num_layers: int = 1) -> torch.Tensor:
        """bool [Hkv, kv_len]: the keys this request's decode steps may choose from."""
        if q.shape[0] < 1:
            return torch.ones(k.shape[1], k.shape[0], dtype=torch.bool, device=k.device)
        return self.keep(q, k)

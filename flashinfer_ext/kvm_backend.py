"""The `kvm` attention backend: SGLang's torch-native backend driven by a KV method's plans.

Per request and layer it gathers the request's K/V from SGLang's token pool (through
`req_to_token`), asks the method for a plan, and runs an executor on it: the exact torch executor
on CPU, the FlashInfer executor on CUDA (`flashinfer_ext.plugin.create_backend` picks). Method state lives
per physical KV slot (`SlotState`), so a compression decided on a shared context is seen by every
fork and turn that reuses those slots, and is reset whenever SGLang writes a slot again.

Lifecycle (SCBench's): a dropping method compresses once, when the context's prefill completes:
in multi-turn mode that prefill holds context + question 1 (query-aware), in multi-request mode it
is the committed context alone (query-agnostic). "The context's prefill" is an extend that brings
more new tokens than it finds cached (a short cached prefix, such as an instruction shared with
another session, keeps its own state); later turns and questions extend a long cached context and
are appended uncompressed. The server runs without chunked prefill, so that prefill is one extend.

Two capabilities a method may declare: `plans_on_visible` (its decode plan is made from the keys
still visible: `decode_plan_visible(q, k, visible)`, RocketKV's second stage) and
`selects_per_turn` (`turn_keep(q, k)` at every extend selects keys for that request's own decode
steps without evicting anything, RocketKV-MT; kept per request pool index and layer, dropped when
the request leaves the decode batch).

A method scored by a pass over the context (`scoring_pass`: KVzip) decides nothing at that prefill:
the client then sends the reconstruction requests (`flashinfer_ext.context_scoring`), whose request
ids say which context positions each one scores; the backend gathers the scores per layer and KV
head and, after the last one, keeps the method's selection visible. Those requests change nothing
else, and a gold probe never scores.

Quantization methods read the pool through `quantize_where`: attention sees dequantized K/V where
the method says, full precision elsewhere. Which tokens depends on the method's `scope`:
- "stored" (FP8): every token read back from the pool, at an extend the cached prefix and at decode
  every stored token; an extend's own tokens are attended in full precision, as the reference
  implementations do before writing the cache.
- "context" (KIVI, as SCBench's `KiviCache` runs it): only the tokens of the context's prefill. After
  that prefill's attention (which reads it in full precision) its slots are marked in the slot
  state, keys and values apart (`context_split`: the keys but the last T mod residual, the values
  but the last residual); later reads dequantize the marked ones. Every slot written afterwards, by
  a decode step (`forward_decode` -> `_store`) or a later extend (the next turn, a question over a
  committed context), is reset to full precision and stays so: SCBench appends those tokens to its
  full-precision part and never re-quantizes. Key groups are aligned at position 0 of the sequence
  and the server's page size equals the group size, so radix sharing never splits a group (a
  partial last page that a later request recomputes lies in the full-precision tail anyway).
"""

from __future__ import annotations

import json

import torch

from flashinfer_ext.context_scoring import ContextScores, parse_scoring_rid
from flashinfer_ext.plugin import PROBE_RID_PREFIX
from flashinfer_ext.slot_state import SlotState
from kvmethods.base import is_context_prefill
from sglang.srt.layers.attention.torch_native_backend import TorchNativeAttnBackend
from sglang.srt.layers.radix_attention import AttentionType
from sglang.srt.mem_cache.memory_pool import KVWriteLoc


def _extend_lens(forward_batch) -> list[tuple[int, int]]:
    """(cached prefix length, new tokens) per request of an extend batch."""
    prefix = forward_batch.extend_prefix_lens_cpu
    new = forward_batch.extend_seq_lens_cpu
    if prefix is None or new is None:
        prefix, new = forward_batch.extend_prefix_lens.tolist(), forward_batch.extend_seq_lens.tolist()
    return [(int(p), int(n)) for p, n in zip(prefix, new)]


class KVMethodBackend(TorchNativeAttnBackend):
    def __init__(self, model_runner, method, stats_path: str | None = None, stats_detail: bool = False, attend=None):
        super().__init__(model_runner)
        # A fresh prefill under a plain causal plan goes to torch's fused kernel on CPU; the
        # FlashInfer executor already makes that one call.
        self.fused_causal = None
        if attend is None:
            from kvmethods.torch_executor import attend, causal_attention

            self.fused_causal = causal_attention

        self.method = method
        self.attend = attend  # the executor: exact torch on CPU, FlashInfer on CUDA
        self.num_layers = model_runner.model_config.num_hidden_layers
        self.state: SlotState | None = None
        self.stats = KeptKVStats(stats_path, self.num_layers, detail=stats_detail)
        self.quantizes = "store" in method.phases
        # Quantization of the context prefill's tokens only: their slots are marked (KIVI).
        self.marks_quantized = self.quantizes and method.scope == "context"
        # A method scored by a pass over the context (KVzip) decides on that pass, not at the prefill.
        self.context_scores = ContextScores(method, self.num_layers) if getattr(method, "scoring_pass", False) else None
        self.compresses = "compress" in method.phases and self.context_scores is None
        # Without a decode phase a method's decode plan is full attention over the visible keys.
        self.batched_decode = "decode" not in method.phases and not self.quantizes
        # A method that plans a decode step from the keys still visible (RocketKV) gets them.
        self.plans_on_visible = bool(getattr(method, "plans_on_visible", False))
        # A method that selects anew at every extend without evicting (RocketKV-MT): the selection
        # is the request's own (forks of a shared context ask different questions), kept per
        # request pool index and layer until the request leaves the decode batch.
        self.selects_per_turn = bool(getattr(method, "selects_per_turn", False))
        self.turn_keep: dict[int, dict[int, torch.Tensor]] = {}

    # -- helpers -----------------------------------------------------------------------------

    def _slot_state(self, layer) -> SlotState:
        if self.state is None:
            k_buffer = self.token_to_kv_pool.get_key_buffer(layer.layer_id)
            heads = self.method.state_heads(layer.tp_q_head_num, layer.tp_k_head_num)
            self.state = SlotState(
                self.num_layers, k_buffer.shape[0], heads, device=k_buffer.device,
                quantization_marks=self.marks_quantized,
            )
            self.stats.heads = "query" if heads == layer.tp_q_head_num else "kv"
        return self.state

    def _store(self, layer, forward_batch, k, v, save_kv_cache: bool) -> None:
        if not save_kv_cache or k is None or v is None:
            return
        cache_loc = forward_batch.out_cache_loc
        self.token_to_kv_pool.set_kv_buffer(layer, KVWriteLoc(cache_loc, self.swa_out_cache_loc), k, v)
        self._slot_state(layer).reset(layer.layer_id, cache_loc)

    def _request_kv(self, layer, req_pool_index, seq_len: int, stored: int):
        """Slots, keys and values of a request's first `seq_len` tokens, of which `stored` are read
        back from the pool and the rest were just written; a quantization method's K/V as
        attention reads them."""
        slots = self.req_to_token_pool.req_to_token[req_pool_index, :seq_len].long()
        k = self.token_to_kv_pool.get_key_buffer(layer.layer_id).index_select(0, slots)
        v = self.token_to_kv_pool.get_value_buffer(layer.layer_id).index_select(0, slots)
        if self.quantizes and (self.marks_quantized or stored > 0):
            keys, values = self._quantized_positions(layer, slots, stored)
            k, v = self.method.quantize_where(k, v, keys, values)
        return slots, k, v

    def _quantized_positions(self, layer, slots, stored: int):
        """bool[L] keys, bool[L] values: which of a request's positions attention reads quantized."""
        if self.marks_quantized:
            return self._slot_state(layer).quantized_marks(layer.layer_id, slots)
        read_back = torch.arange(slots.shape[0], device=slots.device) < stored
        return read_back, read_back

    def _mark_context(self, layer, slots, prefix_len: int) -> None:
        """The context's prefill is done in this layer: its slots read quantized from now on as the
        method divides them (the cached prefix keeps its own marks)."""
        key_end, value_end = self.method.context_split(slots.shape[0])
        pos = torch.arange(prefix_len, slots.shape[0], device=slots.device)
        self._slot_state(layer).mark_quantized(layer.layer_id, slots[prefix_len:], pos < key_end, pos < value_end)

    def _uses_method(self, layer) -> bool:
        return not (layer.is_cross_attention or layer.attn_type == AttentionType.ENCODER_ONLY)

    def _heads(self, q, layer):
        o = q.new_empty((q.shape[0], layer.tp_q_head_num * layer.v_head_dim))
        return o, q.view(-1, layer.tp_q_head_num, layer.qk_head_dim), o.view(-1, layer.tp_q_head_num, layer.v_head_dim)

    # -- prefill / extend --------------------------------------------------------------------

    def forward_extend(self, q, k, v, layer, forward_batch, save_kv_cache=True):
        if not self._uses_method(layer):
            return super().forward_extend(q, k, v, layer, forward_batch, save_kv_cache)
        self._store(layer, forward_batch, k, v, save_kv_cache)
        state = self._slot_state(layer)
        o, q_, o_ = self._heads(q, layer)
        rids = forward_batch.rids or []
        start = 0
        for i, (prefix_len, q_len) in enumerate(_extend_lens(forward_batch)):
            seq_len = prefix_len + q_len
            probe = i < len(rids) and str(rids[i]).startswith(PROBE_RID_PREFIX)
            # A scoring pass over the context (KVzip) changes only what it scores.
            scoring = parse_scoring_rid(rids[i]) if self.context_scores is not None and i < len(rids) else None
            decides = is_context_prefill(q_len, seq_len) and not probe and scoring is None  # a probe changes no state
            slots, keys, values = self._request_kv(layer, forward_batch.req_pool_indices[i], seq_len, prefix_len)
            query = q_[start : start + q_len]
            plan = self.method.prefill_plan(query, keys, layer=layer.layer_id, num_layers=self.num_layers)
            plan = plan.with_visibility(state.visibility(layer.layer_id, slots))
            if self.fused_causal is not None and prefix_len == 0 and _unrestricted(plan):
                out = self.fused_causal(query, keys, values, scale=layer.scaling)
            else:
                out, _ = self.attend(query, keys, values, plan, scale=layer.scaling)
            o_[start : start + q_len] = out.to(o.dtype)
            if scoring is not None:
                self.context_scores.add(scoring, layer.layer_id, query, keys, slots, layer.scaling, state)
            if self.selects_per_turn and not probe:
                keep = self.method.turn_keep(query, keys, layer=layer.layer_id, num_layers=self.num_layers)
                self.turn_keep.setdefault(int(forward_batch.req_pool_indices[i]), {})[layer.layer_id] = keep
            if self.compresses and decides:
                # The context's prefill. A short cached prefix (another session's identical
                # instruction, a chat header) keeps its own state; the new slots take the decision.
                keep = self.method.compress(query, keys, layer=layer.layer_id, num_layers=self.num_layers)
                state.set_visibility(layer.layer_id, slots[prefix_len:], keep[:, prefix_len:])
            if self.marks_quantized and decides:
                self._mark_context(layer, slots, prefix_len)
            start += q_len
        return o

    # -- decode ------------------------------------------------------------------------------

    def forward_decode(self, q, k, v, layer, forward_batch, save_kv_cache=True):
        if not self._uses_method(layer):
            return super().forward_decode(q, k, v, layer, forward_batch, save_kv_cache)
        q = q.reshape(-1, layer.tp_q_head_num * layer.qk_head_dim)
        self._store(layer, forward_batch, k, v, save_kv_cache)
        state = self._slot_state(layer)
        o, q_, o_ = self._heads(q, layer)
        if self.batched_decode:
            self._decode_batched(q_, o_, layer, forward_batch, state)
            return o
        rids = forward_batch.rids or []
        if self.selects_per_turn and layer.layer_id == 0:  # forget the requests that left
            running = {int(r) for r in forward_batch.req_pool_indices.tolist()}
            self.turn_keep = {r: keep for r, keep in self.turn_keep.items() if r in running}
        for i, seq_len in enumerate(forward_batch.seq_lens_cpu.tolist()):
            seq_len = int(seq_len)
            slots, keys, values = self._request_kv(layer, forward_batch.req_pool_indices[i], seq_len, seq_len)
            query = q_[i : i + 1]
            visible = state.visibility(layer.layer_id, slots)
            if self.selects_per_turn:
                visible = self._with_turn_keep(int(forward_batch.req_pool_indices[i]), layer.layer_id, visible)
            if self.plans_on_visible:
                plan = self.method.decode_plan_visible(
                    query, keys, visible, layer=layer.layer_id, num_layers=self.num_layers
                )
            else:
                plan = self.method.decode_plan(query, keys, layer=layer.layer_id, num_layers=self.num_layers)
            plan = plan.with_visibility(visible)
            out, _ = self.attend(query, keys, values, plan, scale=layer.scaling)
            o_[i] = out[0].to(o.dtype)
            if i < len(rids) and self.stats.wants(rids[i]):
                self.stats.observe(rids[i], layer.layer_id, plan.rows_mask(plan.q_len - 1, plan.q_len)[:, 0], seq_len)
        return o

    def _with_turn_keep(self, pool_index: int, layer_id: int, visible: torch.Tensor) -> torch.Tensor:
        """visible [H, L] narrowed to the request's selection at its extend; the tokens decoded
        since then stay visible."""
        keep = self.turn_keep.get(pool_index, {}).get(layer_id)
        if keep is None:
            return visible
        keep = keep.to(visible.device)
        if keep.shape[0] != visible.shape[0]:
            keep = keep.repeat_interleave(visible.shape[0] // keep.shape[0], dim=0)
        n = min(keep.shape[1], visible.shape[1])
        out = visible.clone()
        out[:, :n] &= keep[:, :n]
        return out

    def _decode_batched(self, q_, o_, layer, forward_batch, state) -> None:
        """Decode for methods without a decode phase: each query sees its visible keys, all of
        them (a full plan restricted to the slot state). One padded, masked attention per group
        of requests instead of a plan and an executor call per request."""
        seq_lens = [int(n) for n in forward_batch.seq_lens_cpu.tolist()]
        rids = forward_batch.rids or []
        k_buffer = self.token_to_kv_pool.get_key_buffer(layer.layer_id)
        v_buffer = self.token_to_kv_pool.get_value_buffer(layer.layer_id)
        hkv, d = k_buffer.shape[1], k_buffer.shape[2]
        group = max(1, DECODE_GATHER_ELEMS // max(1, max(seq_lens) * hkv * d))
        for b0 in range(0, len(seq_lens), group):
            lens = seq_lens[b0 : b0 + group]
            width = max(lens)
            lengths = torch.tensor(lens, device=k_buffer.device)
            in_seq = torch.arange(width, device=k_buffer.device)[None, :] < lengths[:, None]  # [B, L]
            pools = forward_batch.req_pool_indices[b0 : b0 + len(lens)]
            slots = self.req_to_token_pool.req_to_token[pools, :width].long().masked_fill(~in_seq, 0)
            visible = state.visibility(layer.layer_id, slots) & in_seq[:, None, :]  # [B, H, L]
            for j, n in enumerate(lens):
                if b0 + j < len(rids) and self.stats.wants(rids[b0 + j]):
                    self.stats.observe(rids[b0 + j], layer.layer_id, visible[j, :, :n], n)
            slots, visible = compact_visible(slots, visible)
            # index_select, not advanced indexing: several times faster for row gathers on CPU.
            keys = k_buffer.index_select(0, slots.flatten()).view(*slots.shape, hkv, d)
            values = v_buffer.index_select(0, slots.flatten()).view(*slots.shape, hkv, v_buffer.shape[2])
            out = masked_decode(q_[b0 : b0 + len(lens)], keys, values, visible, layer.scaling)
            o_[b0 : b0 + len(lens)] = out.to(o_.dtype)


def _unrestricted(plan) -> bool:
    """Every query row sees its whole causal range: a plain causal plan, every key visible."""
    return plan.covers_causal and (plan.visibility is None or bool(plan.visibility.all()))


# Elements of K gathered at once by the batched decode (requests are grouped to stay under it).
DECODE_GATHER_ELEMS = 1 << 24


def compact_visible(slots: torch.Tensor, visible: torch.Tensor, worth: float = 0.75):
    """Drops the positions no head of a request sees (dropped keys, padding) when that shortens
    the gather enough to pay: slots [B, L], visible [B, H, L] -> [B, W], [B, H, W], W <= L.
    Kept positions stay in order; rows shorter than W are padded with invisible entries."""
    seen = visible.any(dim=1)  # [B, L]
    width = int(seen.sum(dim=1).max())
    if width > worth * slots.shape[1]:
        return slots, visible
    order = torch.argsort((~seen).to(torch.uint8), dim=1, stable=True)[:, :width]  # seen positions first
    return slots.gather(1, order), visible.gather(2, order[:, None, :].expand(-1, visible.shape[1], -1))


def masked_decode(q, k, v, visible, scale: float):
    """One decode step of B requests: q [B, Hq, D], k [B, L, Hkv, D], v [B, L, Hkv, Dv], visible
    bool [B, H, L] with H the KV heads or the query heads. Float32 accumulation; a query that sees
    no key gets 0. Returns [B, Hq, Dv]. Each KV head's query group is the "query length" of one
    SDPA call (GQA without repeating K/V); a per-query-head mask gives each row of it its own."""
    b, hq, d = q.shape
    hkv, length = k.shape[2], k.shape[1]
    mask = visible.view(b, hkv, visible.shape[1] // hkv, length)  # [B, Hkv, 1 or G, L]
    out = torch.nn.functional.scaled_dot_product_attention(
        q.float().view(b, hkv, hq // hkv, d), k.float().transpose(1, 2), v.float().transpose(1, 2),
        attn_mask=mask, scale=scale,
    )
    return out.nan_to_num_(0.0).reshape(b, hq, v.shape[-1])  # rows that see nothing: 0 (not NaN)


MAP_BINS = 64


def kept_map_row(visible: torch.Tensor, bins: int = MAP_BINS) -> list[float]:
    """bool [heads, kv_len] -> the visible share of each of `bins` equal position ranges."""
    kv_len = visible.shape[1]
    edges = torch.linspace(0, kv_len, min(bins, kv_len) + 1).round().long().tolist()
    counts = visible.float().mean(dim=0).cumsum(0)
    prefix = torch.cat([counts.new_zeros(1), counts])
    return [round(float(prefix[b] - prefix[a]) / max(b - a, 1), 3) for a, b in zip(edges, edges[1:])]


class KeptKVStats:
    """Per request, at its first decode step: the fraction of its KV the query could see, averaged
    over layers and heads, and per layer a map of that share over `MAP_BINS` position ranges,
    appended as one JSON line {"rid", "kept_kv", "heads", "seq_len", "kept_map"} to `path`.
    "heads" says what the share is averaged over: "query" (the method selects per query head) or
    "kv" (per KV head). With `detail`, the line also lists the positions visible in layer 0, head 0
    ("visible"), so tests can compare the kept sets of requests that share a prefix."""

    MAX_REMEMBERED = 100_000  # request ids already reported (bounded: a long-lived server)

    def __init__(self, path: str | None, num_layers: int, detail: bool = False):
        self.path = path
        self.num_layers = num_layers
        self.detail = detail
        self.reported: set[str] = set()
        self.partial: dict[str, list[float]] = {}
        self.visible: dict[str, list[int]] = {}
        self.maps: dict[str, list[list[float]]] = {}
        self.heads = "kv"

    def wants(self, rid: str) -> bool:
        """Whether `observe` would record anything for this request (its first decode step)."""
        return bool(self.path) and rid not in self.reported

    def observe(self, rid: str, layer_id: int, last_row: torch.Tensor, seq_len: int) -> None:
        """last_row: bool [heads, kv_len], the keys the request's decode query sees in this layer."""
        if not self.wants(rid):
            return
        last_row = last_row.cpu()
        fractions = self.partial.setdefault(rid, [])
        fractions.append(float(last_row.sum()) / (last_row.shape[0] * max(seq_len, 1)))
        self.maps.setdefault(rid, []).append(kept_map_row(last_row))
        if self.detail and layer_id == 0:
            self.visible[rid] = last_row[0].nonzero().flatten().tolist()
        if layer_id != self.num_layers - 1:
            return
        del self.partial[rid]
        if len(self.reported) >= self.MAX_REMEMBERED:
            self.reported.clear()
        self.reported.add(rid)
        record = {
            "rid": rid,
            "kept_kv": sum(fractions) / len(fractions),
            "heads": self.heads,
            "seq_len": seq_len,
            "kept_map": self.maps.pop(rid),
        }
        if self.detail:
            record["visible"] = self.visible.pop(rid, None)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

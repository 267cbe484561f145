"""The `kvm` plugin without a server: registration, settings, slot state, CLI method parsing,
kept-KV bookkeeping in records and summaries."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest
import torch

from bench.runner import KeptKVReader
from flashinfer_ext.plugin import BACKEND_NAME, METHOD_ENV, STATS_ENV, method_from_env, register
from flashinfer_ext.server_settings import server_settings
from flashinfer_ext.slot_state import SlotState
from kvmethods.registry import parse_methods
from results.records import TurnRecord
from results.summary import results_table, summarize


def test_entry_point_points_at_register():
    (ep,) = [ep for ep in entry_points(group="sglang.srt.plugins") if ep.name == "scbench_kvm"]
    assert ep.load() is register


def test_register_makes_the_backend_a_valid_choice_idempotently():
    from sglang.srt.arg_groups.choices import ATTENTION_BACKEND_CHOICES
    from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS

    register()
    register()
    assert ATTENTION_BACKEND_CHOICES.count(BACKEND_NAME) == 1
    assert BACKEND_NAME in ATTENTION_BACKENDS


def test_method_travels_through_the_environment(monkeypatch):
    (method,) = parse_methods(("minference+snapkv",), ("budget=512", "minference.vertical_size=64"))
    settings = server_settings(method, "cpu", "/tmp/stats.jsonl")
    monkeypatch.setenv(METHOD_ENV, settings.env[METHOD_ENV])
    got = method_from_env()
    assert got.to_dict() == method.to_dict()
    assert got.kv.budget == 512 and got.prefill.vertical_size == 64
    monkeypatch.delenv(METHOD_ENV)
    assert method_from_env().name == "full"


def test_server_settings_per_method():
    full, snapkv, kivi, fp8 = parse_methods(("full", "snapkv", "kivi", "fp8"), ())
    assert server_settings(full, "cpu").attention_backend is None  # SGLang's own backend
    s = server_settings(snapkv, "cpu", "/x/kept.jsonl")
    assert s.uses_plugin and s.env[STATS_ENV] == "/x/kept.jsonl"
    assert s.extra_args[s.extra_args.index("--chunked-prefill-size") + 1] == "-1"
    assert json.loads(s.env[METHOD_ENV])["method"] == "snapkv"
    k = server_settings(kivi, "cpu")
    assert k.extra_args[k.extra_args.index("--page-size") + 1] == "32"  # pages never split a group
    assert "--page-size" not in s.extra_args
    assert server_settings(fp8, "cuda").extra_args == ["--kv-cache-dtype", "fp8_e4m3"]
    assert server_settings(fp8, "cpu").uses_plugin
    on_kvm = server_settings(full, "cpu", kvm_always=True)  # to check the executor against SGLang's
    assert on_kvm.uses_plugin and json.loads(on_kvm.env[METHOD_ENV])["method"] == "full"
    assert server_settings(fp8, "cuda", kvm_always=True).extra_args == ["--chunked-prefill-size", "-1", "--disable-cuda-graph"]


def test_plugin_modules_reach_the_server_processes(monkeypatch):
    from discovery import PLUGINS_ENV

    full, snapkv = parse_methods(("full", "snapkv"), ())
    assert PLUGINS_ENV not in server_settings(snapkv, "cpu").env
    monkeypatch.setenv(PLUGINS_ENV, " lab.tasks , lab.methods,")
    for method in (full, snapkv):
        assert server_settings(method, "cpu").env[PLUGINS_ENV] == "lab.tasks,lab.methods"


@pytest.mark.parametrize(
    "specs, args, message",
    [
        (("snap",), (), "Unknown method 'snap'. Did you mean 'snapkv'?"),
        (("snapkv",), ("budgte=1",), "has no field 'budgte'. Did you mean 'budget'?"),
        (("snapkv",), ("budget=x",), "snapkv.budget: expected int, got 'x'"),
        (("snapkv",), ("budget",), "must look like field=value"),
        (("streamingllm",), ("budget=64",), "budget (64) must exceed sink (128)"),
        (("snapkv",), ("quest.page_size=3",), "'quest' is not among --methods (snapkv)"),
        (("snapkv", "quest"), ("quest.pagesize=3",), "Method 'quest' has no field 'pagesize'"),
        (("snapkv", "snapkv"), (), "names a method twice"),
    ],
)
def test_bad_methods_and_settings_fail_with_one_line(specs, args, message):
    with pytest.raises(ValueError) as err:
        parse_methods(specs, args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_shared_settings_reach_every_method_that_has_the_field():
    a_shape, minference, quest = parse_methods(
        ("a_shape", "minference", "quest"), ("budget=256", "minference.vertical_size=64", "page_size=32")
    )
    assert (a_shape.budget, minference.budget, quest.budget) == (256, 256, 256)
    assert minference.vertical_size == 64 and quest.page_size == 32
    (quest,) = parse_methods(("quest",), ("quest.budget=128", "budget=512"))
    assert quest.budget == 128  # the qualified setting wins, whatever the order


def test_slot_state_is_per_slot_and_reset_on_write():
    state = SlotState(num_layers=2, num_slots=10, num_heads=2)
    slots = torch.tensor([3, 4, 5, 6])
    keep = torch.tensor([[True, False, True, False], [False, True, True, True]])
    state.set_visibility(1, slots, keep)
    assert torch.equal(state.visibility(1, slots), keep)
    # Another request sharing slots 4 and 5 sees the same decision, in its own order.
    assert torch.equal(state.visibility(1, torch.tensor([5, 4])), keep[:, [2, 1]])
    batch = state.visibility(1, torch.stack([slots, torch.tensor([5, 4, 3, 6])]))  # [B, heads, L]
    assert torch.equal(batch[0], keep) and torch.equal(batch[1], keep[:, [2, 1, 0, 3]])
    assert state.visibility(0, slots).all()  # layers are independent
    state.reset(1, torch.tensor([4]))  # slot 4 rewritten with fresh KV
    assert state.visibility(1, torch.tensor([4])).all()
    assert not state.visibility(1, torch.tensor([3]))[1].item()


def test_slot_state_quantization_marks_are_per_slot_and_reset_on_write():
    state = SlotState(num_layers=2, num_slots=10, num_heads=2, quantization_marks=True)
    slots = torch.tensor([3, 4, 5, 6])
    state.mark_quantized(1, slots, torch.tensor([True, True, True, False]), torch.tensor([True, True, False, False]))
    keys, values = state.quantized_marks(1, torch.tensor([5, 3, 6]))
    assert keys.tolist() == [True, True, False] and values.tolist() == [False, True, False]
    assert not state.quantized_marks(0, slots)[0].any()  # layers are independent
    state.reset(1, torch.tensor([3]))  # rewritten (a decode step, a later extend): full precision
    assert state.quantized_marks(1, torch.tensor([3, 4]))[0].tolist() == [False, True]
    with pytest.raises(ValueError, match="no quantization marks"):
        SlotState(num_layers=1, num_slots=4, num_heads=1).quantized_marks(0, slots[:1])


@pytest.mark.parametrize("name", ["kivi", "fp8"])
def test_backend_reads_quantized_kv_by_the_method_scope(name):
    """KIVI (scope "context") reads the context prefill's tokens quantized, everything written
    after in full precision; FP8 (scope "stored") reads every stored token quantized."""
    from kvmethods import get_method
    from tests.kvm_harness import BackendHarness

    method = get_method(name)
    h = BackendHarness(method, num_q_heads=4, num_kv_heads=2, head_dim=32)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(100, 4, 32, generator=gen)
    k, v = torch.randn(100, 2, 32, generator=gen), torch.randn(100, 2, 32, generator=gen)
    keys, values = h.extend(0, q[:80], k[:80], v[:80])  # the context's prefill: read in full precision
    assert torch.equal(keys, k[:80]) and torch.equal(values, v[:80])
    for t in range(80, 84):
        keys, values = h.decode(0, q[t : t + 1], k[t : t + 1], v[t : t + 1])
    want_k, want_v = method.quantize_kv(k[:84], v[:84])  # FP8: all 84; KIVI: as after an 84-token prefill
    if name == "kivi":  # the context's split (keys 0-63, values 0-47) and nothing after it
        want_k, want_v = method.quantize_kv(k[:80], v[:80])
        want_k, want_v = torch.cat([want_k, k[80:84]]), torch.cat([want_v, v[80:84]])
        assert not torch.equal(keys[:64], k[:64]) and torch.equal(keys[64:], k[64:84])
    assert torch.equal(keys, want_k) and torch.equal(values, want_v)
    h.share(1, from_req=0, length=64)  # a later turn over the cached context: full precision
    keys, _ = h.extend(1, q[64:100], k[64:100], v[64:100])
    assert torch.equal(keys[64:], k[64:100]) and torch.equal(keys[:64], want_k[:64])


def record(method: str = "full", turn: int = 0, request_id: str | None = None, **fields) -> TurnRecord:
    return TurnRecord(task="kv", mode="multi-turn", sample_id="s", sample_index=0, category="String Retrieval",
                      point=method, method=method, method_settings={"method": method}, budget=None, turn=turn,
                      request_id=request_id, **fields)


def test_kept_kv_lines_join_records_by_request_id(tmp_path):
    path = tmp_path / "kept.jsonl"
    reader = KeptKVReader(path)
    records = reader.annotate([record(request_id="a"), record(request_id="b")])  # no file yet
    assert [r.kept_kv for r in records] == [None, None]
    path.write_text(json.dumps({"rid": "a", "kept_kv": 0.25, "heads": "query"}) + "\n" + '{"rid": "b", "kep')  # b half-written
    records = reader.annotate([record(request_id="a"), record(request_id="b")])
    assert [(r.kept_kv, r.kept_kv_heads) for r in records] == [(0.25, "query"), (None, None)]
    with path.open("a") as fh:
        fh.write('t_kv": 0.5}\n')
    (got,) = reader.annotate([record(request_id="b")])
    assert got.kept_kv == 0.5
    (got,) = KeptKVReader(None).annotate([record(request_id="a")])  # a server without the plugin reports nothing
    assert got.kept_kv is None


def test_kept_map_gives_the_visible_share_per_position_range():
    from flashinfer_ext.kvm_backend import kept_map_row

    visible = torch.zeros(2, 10, dtype=torch.bool)
    visible[0, :5] = True
    visible[1] = True
    assert kept_map_row(visible, bins=4) == [1.0, 1.0, 0.5, 0.5]  # ranges [0,2) [2,5) [5,8) [8,10)
    assert len(kept_map_row(visible)) == 10  # never more bins than positions
    assert kept_map_row(torch.ones(1, 1000, dtype=torch.bool)) == [1.0] * 64


def test_summary_groups_by_method_in_run_order():
    def rec(method, turn, score, kept):
        return record(method, turn, score=score, prompt_tokens=100, cached_tokens=50, kept_kv=kept)

    records = [rec("snapkv", 0, 1.0, 0.2), rec("snapkv", 1, 0.0, 0.3), rec("full", 0, 1.0, None)]
    summary = summarize(records)
    assert [r.method for r in summary.results] == ["snapkv", "full"]
    snap = summary.results[0]
    assert [t.kept_kv for t in snap.turns] == [0.2, 0.3] and snap.score == 0.5
    assert summary.results[1].turns[0].kept_kv is None
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(results_table(summary))
    text = console.export_text()
    assert "snapkv" in text and "20.0%" in text and "kept KV" in text


def test_batched_decode_matches_the_executor_per_request():
    # The backend's decode for methods without a decode phase: padded, masked, all requests at once.
    from flashinfer_ext.kvm_backend import compact_visible, masked_decode
    from kvmethods.plan import SparsePlan
    from kvmethods.torch_executor import attend

    gen = torch.Generator().manual_seed(0)
    lens, hq, hkv, d = [37, 5, 64, 1], 6, 2, 16
    width = max(lens)
    q = torch.randn(len(lens), hq, d, generator=gen)
    k = torch.randn(len(lens), width, hkv, d, generator=gen)
    v = torch.randn(len(lens), width, hkv, d, generator=gen)
    visible = torch.rand(len(lens), hkv, width, generator=gen) < 0.4
    visible[2, 1] = False  # a head that sees nothing: out 0, as the executor gives
    for b, n in enumerate(lens):
        visible[b, :, n:] = False  # padding
    out = masked_decode(q, k, v, visible, scale=0.25)
    for b, n in enumerate(lens):
        plan = SparsePlan.full(1, n, hkv).with_visibility(visible[b, :, :n])
        want, _ = attend(q[b : b + 1], k[b, :n], v[b, :n], plan, scale=0.25)
        torch.testing.assert_close(out[b], want[0], rtol=1e-5, atol=1e-6)
    assert out[2, 3:].abs().sum() == 0 and out[2, :3].abs().sum() > 0  # heads 3-5 read KV head 1
    # Dropping the positions no head sees (as the backend does before gathering) changes nothing.
    slots = torch.arange(width).expand(len(lens), -1)
    kept, kept_visible = compact_visible(slots, visible)
    assert kept.shape[1] < width and kept_visible.sum() == visible.sum()
    rows = torch.arange(len(lens))[:, None]
    compact = masked_decode(q, k[rows, kept], v[rows, kept], kept_visible, scale=0.25)
    torch.testing.assert_close(compact, out, rtol=1e-5, atol=1e-6)
    everything = torch.ones(len(lens), hkv, width, dtype=torch.bool)
    assert compact_visible(slots, everything)[0] is slots  # nothing to drop: no copy


"""Registry, parsing, validation, serialisation and composition of the KV methods."""

from __future__ import annotations

import dataclasses
import json

import pytest

import kvmethods
from kvmethods import METHODS, PHASES, Composite, ServerNeeds, from_dict, get_method, method_names, parse_method
from tests.conftest import REPO


def test_every_method_module_is_registered():
    """Discovery finds every `@register("name")` of kvmethods/, and the README's table lists each."""
    import re

    declared = {m for p in (REPO / "kvmethods").glob("*.py") for m in re.findall(r'^@register\("(\w+)"\)', p.read_text(), re.M)}
    assert declared and set(method_names()) == declared
    assert method_names() == sorted(METHODS)
    for name, cls in METHODS.items():
        assert cls.name == name
    readme = (REPO / "README.md").read_text()
    for name in method_names():
        assert f"`{name}`" in readme, f"README's KV methods table does not list {name}"


@pytest.mark.parametrize("name", method_names())
def test_method_shape_and_docs(name):
    cls = METHODS[name]
    method = get_method(name)
    assert dataclasses.is_dataclass(method)
    with pytest.raises(dataclasses.FrozenInstanceError):
        method.budget = 7  # type: ignore[misc]
    assert isinstance(cls.phases, frozenset) and cls.phases <= PHASES
    assert isinstance(cls.stateful, bool)
    assert "budget" in cls.field_names()
    doc = cls.__doc__ or ""
    assert "https://arxiv.org/abs/" in doc
    for field in cls.field_names():
        assert f"{field} (" in doc, f"{name} docstring does not list field {field!r}"
    assert from_dict(json.loads(json.dumps(method.to_dict()))) == method


def test_capabilities_by_family():
    caps = {n: (METHODS[n].phases, METHODS[n].stateful) for n in method_names()}
    assert caps["full"] == (frozenset(), False)
    for n in ("a_shape", "tri_shape", "minference", "flexprefill"):
        assert caps[n] == (frozenset({"prefill"}), False)
    for n in ("streamingllm", "snapkv", "pyramidkv"):
        assert caps[n] == (frozenset({"compress"}), True)
    for n in ("kivi", "fp8"):
        assert caps[n] == (frozenset({"store"}), True)
    assert caps["quest"] == (frozenset({"decode"}), True)


def test_scbench_defaults():
    a = get_method("a_shape")
    assert (a.budget, a.sink, a.window) == (4096, 128, 3968)
    assert get_method("tri_shape").last_q == 100
    m = get_method("minference")
    assert (m.vertical_size, m.slash_size, m.last_q) == (512, 2048, 64)
    f = get_method("flexprefill")
    assert (f.gamma, f.tau, f.block_size) == (0.9, 0.1, 128)
    s = get_method("streamingllm")
    assert (s.budget, s.sink) == (4096, 128)
    snap = get_method("snapkv")
    assert (snap.budget, snap.window, snap.kernel_size, snap.pooling) == (4096, 32, 5, "avgpool")
    pyr = get_method("pyramidkv")
    assert (pyr.budget, pyr.window, pyr.beta) == (4096, 32, 20)
    k = get_method("kivi")
    assert (k.bits, k.group_size, k.residual) == (2, 32, 32)
    q = get_method("quest")
    assert (q.page_size, q.budget) == (16, 1024)


def test_parse_types_fields():
    m = parse_method("snapkv", ["budget=1024", "window=16", "pooling=maxpool"])
    assert (m.budget, m.window, m.pooling) == (1024, 16, "maxpool")
    f = parse_method("flexprefill", ["gamma=0.95", "tau=0"])
    assert f.gamma == 0.95 and f.tau == 0.0 and isinstance(f.tau, float)
    assert get_method("flexprefill", tau=0).tau == 0.0  # int accepted for a float field


@pytest.mark.parametrize(
    ("spec", "args", "message"),
    [
        ("snapk", [], "Unknown method 'snapk'. Did you mean 'snapkv'? Available: a_shape, duoattention, flexprefill"),
        ("snapkv", ["windw=3"], "Method 'snapkv' has no field 'windw'. Did you mean 'window'? Fields: budget, heads, wi"),
        ("snapkv", ["window=abc"], "snapkv.window: expected int, got 'abc'"),
        ("snapkv", ["window=1.5"], "snapkv.window: expected int"),
        ("flexprefill", ["gamma=x"], "flexprefill.gamma: expected float"),
        ("snapkv", ["budget=0"], "snapkv.budget must be >= 1, got 0"),
        ("kivi", ["bits=9"], "kivi.bits must be in [1, 8], got 9"),
        ("snapkv", ["window"], "Method argument 'window' must look like field=value"),
        ("snapkv", ["budget=16", "window=32"], "budget (16) must exceed window (32)"),
        ("snapkv", ["kernel_size=4"], "kernel_size must be odd"),
        ("flexprefill", ["gamma=1.5"], "gamma must be in (0, 1]"),
        ("a_shape", ["budget=100", "sink=128"], "budget (100) must exceed sink (128)"),
        ("snapkv", ["snapkv.window=3"], "Qualified fields"),
    ],
)
def test_parse_errors_are_one_helpful_line(spec, args, message):
    with pytest.raises(ValueError) as err:
        parse_method(spec, args)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_direct_construction_validates_types():
    with pytest.raises(ValueError, match=r"snapkv.window: expected int, got str '3'"):
        METHODS["snapkv"](window="3")
    with pytest.raises(ValueError, match="expected int, got bool"):
        get_method("quest", budget=True)
    with pytest.raises(ValueError, match="has no field 'nope'"):
        get_method("quest", nope=1)


def test_composition_routes_fields_and_unions_capabilities():
    m = parse_method("minference+snapkv", ["budget=2048", "minference.budget=3000", "vertical_size=256"])
    assert isinstance(m, Composite)
    assert m.name == "minference+snapkv"
    assert (m.kv.budget, m.prefill.budget, m.prefill.vertical_size) == (2048, 3000, 256)
    assert m.phases == frozenset({"prefill", "compress"})
    assert m.stateful is True and m.budget == 2048
    assert from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert get_method("a_shape+kivi", bits=4).kv.bits == 4
    assert get_method("a_shape+kivi").budget == 4096  # KIVI has no budget: the prefill method's
    quest = get_method("tri_shape+quest")
    assert quest.phases == frozenset({"prefill", "decode"})
    assert quest.select_pages.__self__ is quest.kv  # method-specific helpers come from the KV method
    assert quest.replace(budget=512).kv.budget == 512


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("snapkv+minference", "the first method must be a sparse-prefill method"),
        ("full+snapkv", "the first method must be a sparse-prefill method"),
        ("a_shape+minference", "the second method must be a KV method"),
        ("a_shape+full", "the second method must be a KV method"),
        ("a_shape+a_shape", "Cannot compose a method with itself"),
        ("a_shape+snapkv+kivi", "two names"),
        ("a_shape+snapk", "Did you mean 'snapkv'?"),
    ],
)
def test_bad_compositions(spec, message):
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace("+", r"\+")):
        parse_method(spec)


def test_composite_field_errors():
    with pytest.raises(ValueError, match=r"Method 'minference\+snapkv' has no field 'nope'"):
        parse_method("minference+snapkv", ["nope=1"])
    with pytest.raises(ValueError, match="'quest' is not part of"):
        parse_method("minference+snapkv", ["quest.budget=1"])


def test_from_dict_errors():
    with pytest.raises(ValueError, match="'method' key"):
        from_dict({"budget": 3})
    with pytest.raises(ValueError, match="has no field 'bogus'"):
        from_dict({"method": "snapkv", "bogus": 1})
    bad = get_method("a_shape+snapkv").to_dict()
    bad["method"] = "a_shape+pyramidkv"
    with pytest.raises(ValueError, match="does not match its parts"):
        from_dict(bad)


def test_package_exports():
    for name in ("get_method", "parse_method", "from_dict", "method_names", "METHODS", "SparsePlan"):
        assert hasattr(kvmethods, name)


def test_server_needs_are_a_capability_of_the_method():
    """What the server must provide comes from the method: SGLang's own backend for `full` (and
    its FP8 KV cache for FP8 on CUDA), the `kvm` backend with whole prefills for the rest, KIVI's
    group as the page size (a composition keeps its parts' largest page)."""
    for name in method_names():
        for device in ("cpu", "cuda"):
            needs = get_method(name).server_needs(device)
            assert type(needs) is ServerNeeds
            assert needs.backend == "kvm" or name in ("full", "fp8")
    assert get_method("full").server_needs("cpu") == ServerNeeds(backend="native")
    assert get_method("fp8").server_needs("cuda") == ServerNeeds(backend="native", kv_cache_dtype="fp8_e4m3")
    assert get_method("fp8").server_needs("cpu") == ServerNeeds()
    assert get_method("kivi", group_size=16, residual=32).server_needs("cpu") == ServerNeeds(page_size=16)
    assert get_method("a_shape+kivi").server_needs("cuda") == ServerNeeds(page_size=32)
    assert get_method("a_shape+fp8").server_needs("cuda") == ServerNeeds()  # the sparse prefill needs kvm
    assert ServerNeeds(backend="native", page_size=4).on_kvm() == ServerNeeds(page_size=4)
    with pytest.raises(ValueError, match="only with backend 'native'"):
        ServerNeeds(kv_cache_dtype="fp8_e4m3")

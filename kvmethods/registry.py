"""Method registry: register by decorator, look up by name, fail with one helpful line.

Method modules are discovered, not listed: every module of `kvmethods/` and every module
`SCBENCH_PLUGINS` names (`discovery`) is imported before the first lookup; a method module
registers its class with `@register("name")`, the shared modules register nothing.

Names: a registered method ("snapkv") or a composition "<sparse prefill>+<KV method>"
("minference+snapkv"). Settings are "field=value" strings typed by the dataclass fields. In a
composition an unqualified field goes to the KV method when it has that field, else to the prefill
method; qualify it ("minference.budget=1024") to reach the other one.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable

from discovery import import_package, import_plugins, plugin_modules
from kvmethods.base import KVMethod

__all__ = [
    "METHODS", "discover", "register", "method_names", "get_method", "has_field", "parse_method", "parse_methods",
    "from_dict",
]

METHODS: dict[str, type[KVMethod]] = {}
_discovered_plugins: tuple[str, ...] | None = None
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def register(name: str) -> Callable[[type[KVMethod]], type[KVMethod]]:
    """Class decorator: make a method available as `name`."""

    def deco(cls: type[KVMethod]) -> type[KVMethod]:
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"method name {name!r} is already registered by {METHODS[name].__name__}")
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def discover() -> None:
    """Imports the method modules once, and the plugins again when `SCBENCH_PLUGINS` changed."""
    global _discovered_plugins
    if _discovered_plugins is None:
        _discovered_plugins = ()
        import_package("kvmethods")
    if _discovered_plugins != (plugins := plugin_modules()):
        _discovered_plugins = plugins
        import_plugins()


def method_names() -> list[str]:
    discover()
    return sorted(METHODS)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _method_class(name: str) -> type[KVMethod]:
    discover()
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}.{_suggest(name, METHODS)} Available: {', '.join(method_names())}")
    return METHODS[name]


def _check_fields(cls: type[KVMethod], names: Iterable[str]) -> None:
    known = cls.field_names()
    for fname in names:
        if fname not in known:
            raise ValueError(
                f"Method {cls.name!r} has no field {fname!r}.{_suggest(fname, known)} Fields: {', '.join(known)}"
            )


def _convert(cls: type[KVMethod], fname: str, raw: str) -> Any:
    ftype = cls.field_types()[fname]
    text = raw.strip()
    try:
        if ftype is bool:
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if ftype is int:
            return int(text, 10)
        if ftype is float:
            return float(text)
        return text
    except ValueError:
        raise ValueError(f"{cls.name}.{fname}: expected {ftype.__name__}, got {raw!r}") from None


def _split_composite(name: str) -> tuple[str, str] | None:
    if "+" not in name:
        return None
    parts = [p.strip() for p in name.split("+")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"A composition is '<sparse prefill>+<KV method>' (two names), got {name!r}")
    return parts[0], parts[1]


def _route(names: tuple[str, str], fname: str) -> tuple[str, str]:
    """(component, field) for an unqualified or qualified field name in a composition."""
    prefill, kv = names
    if "." in fname:
        comp, _, field = fname.partition(".")
        if comp not in names:
            raise ValueError(f"{fname!r}: {comp!r} is not part of '{prefill}+{kv}'")
        return comp, field
    for comp in (kv, prefill):
        if fname in _method_class(comp).field_names():
            return comp, fname
    fields = sorted({f for c in names for f in _method_class(c).field_names()})
    raise ValueError(
        f"Method '{prefill}+{kv}' has no field {fname!r}.{_suggest(fname, fields)} Fields: {', '.join(fields)}"
    )


def _build(name: str, values: dict[str, Any], from_strings: bool) -> Any:
    pair = _split_composite(name)
    if pair is None:
        cls = _method_class(name.strip())
        if "." in "".join(values):
            raise ValueError(
                f"Qualified fields ({', '.join(values)}) only apply to compositions like 'minference+snapkv'"
            )
        _check_fields(cls, values)
        typed = {f: _convert(cls, f, v) for f, v in values.items()} if from_strings else values
        return cls(**typed)
    from kvmethods.composite import Composite

    for part in pair:
        _method_class(part)
    if pair[0] == pair[1]:
        raise ValueError(f"Cannot compose a method with itself: {name!r}")
    per: dict[str, dict[str, Any]] = {pair[0]: {}, pair[1]: {}}
    for fname, value in values.items():
        comp, field = _route(pair, fname)
        per[comp][field] = value
    return Composite(_build(pair[0], per[pair[0]], from_strings), _build(pair[1], per[pair[1]], from_strings))


def has_field(spec: str, fname: str) -> bool:
    """Whether `fname` (plain, or "component.field" in a composition) names a field of `spec`."""
    pair = _split_composite(spec)
    if pair is None:
        comp, _, field = fname.rpartition(".")
        return comp in ("", spec.strip()) and field in _method_class(spec.strip()).field_names()
    comp, _, field = fname.rpartition(".")
    if comp:
        return comp in pair and field in _method_class(comp).field_names()
    return any(fname in _method_class(part).field_names() for part in pair)


def get_method(name: str, **fields: Any) -> Any:
    """A method instance by name ("snapkv", "minference+snapkv") with typed field values."""
    return _build(name, fields, from_strings=False)


def parse_method(spec: str, args: Iterable[str] = ()) -> Any:
    """A method from a CLI-style spec and "field=value" strings, typed by the dataclass fields."""
    values: dict[str, str] = {}
    for arg in args:
        fname, sep, raw = arg.partition("=")
        if not sep or not fname.strip():
            raise ValueError(f"Method argument {arg!r} must look like field=value")
        values[fname.strip()] = raw
    return _build(spec, values, from_strings=True)


def from_dict(data: dict[str, Any]) -> Any:
    """Invert `to_dict()` (a plain method or a composition)."""
    if not isinstance(data, dict) or "method" not in data:
        raise ValueError(f"A method config is a dict with a 'method' key, got {data!r}")
    name = data["method"]
    pair = _split_composite(name)
    if pair is None:
        return get_method(name, **{k: v for k, v in data.items() if k != "method"})
    from kvmethods.composite import Composite

    extra = set(data) - {"method", "prefill", "kv"}
    if extra:
        raise ValueError(f"A composition config has keys method, prefill, kv; unexpected: {', '.join(sorted(extra))}")
    prefill, kv = from_dict(data["prefill"]), from_dict(data["kv"])
    if (prefill.name, kv.name) != pair:
        raise ValueError(f"Composition {name!r} does not match its parts {prefill.name!r} and {kv.name!r}")
    return Composite(prefill, kv)


def parse_methods(specs: tuple[str, ...], method_args: tuple[str, ...]) -> list:
    """Method instances for `--methods a,b` with the shared `--method-arg field=value` settings.

    A setting applies to every method that has the field (and must be valid there); qualified by a
    method's name ("minference.vertical_size=64") it applies to that method alone. A setting no
    method has is an error, so a typo never silently runs the defaults.
    """
    for arg in method_args:
        if "=" not in arg or not arg.partition("=")[0].strip():
            raise ValueError(f"--method-arg {arg!r} must look like field=value (e.g. budget=2048)")
    methods = []
    for spec in specs:
        mine = [arg for arg in method_args if has_field(spec, arg.partition("=")[0].strip())]
        # A qualified setting wins over a shared one whatever their order (later values override).
        mine.sort(key=lambda arg: "." in arg.partition("=")[0])
        if "+" not in spec:  # a plain method takes its own qualified fields unqualified
            mine = [arg.strip().removeprefix(f"{spec.strip()}.") for arg in mine]
        methods.append(parse_method(spec, mine))
    for arg in method_args:
        fname = arg.partition("=")[0].strip()
        if not any(has_field(spec, fname) for spec in specs):
            owner = fname.rpartition(".")[0]
            parts = {p.strip() for spec in specs for p in spec.split("+")}
            if owner and owner not in parts:
                raise ValueError(f"--method-arg {arg!r}: {owner!r} is not among --methods ({', '.join(specs)})")
            target = next((s for s in specs if owner in s.split("+")), specs[0]) if owner else specs[0]
            parse_method(target, [arg if "+" in target else arg.strip().removeprefix(f"{owner}.")])  # raises the registry's one line, with the field list
    labels = [m.name for m in methods]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--methods names a method twice: {', '.join(labels)}")
    return methods

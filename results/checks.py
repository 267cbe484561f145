"""Typed reading of the run files' JSON: a dataclass from a dict, each field's type checked.

A value of the wrong type, a missing field or an unknown one is a `RunFormatError`: one line naming
where it was found (the file, and the line of a JSONL file) and what is wrong.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from typing import Any, Self, TypeVar

from errors import UsageError

T = TypeVar("T")


class RunFormatError(UsageError):
    """A run file that cannot be read as what it should be: damaged, of another format, or not a run."""


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
          dict: "an object", type(None): "null"}


def found(value: Any) -> str:
    """What a JSON value is, in words (for error messages)."""
    return _NAMES.get(type(value), type(value).__name__)


_PLURALS = {"an integer": "integers", "a number": "numbers", "a string": "strings", "true or false": "booleans",
            "an object": "objects", "null": "nulls", "anything": "anything"}


def _wanted(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is Any:
        return "anything"
    if dataclasses.is_dataclass(hint):
        return "an object"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_wanted(arg) for arg in typing.get_args(hint))
    if origin is list:
        item = _wanted(typing.get_args(hint)[0])
        return f"a list of {_PLURALS.get(item, item.replace('a list', 'lists', 1))}"
    return _NAMES.get(origin or hint, str(hint))


@functools.cache
def _checker(hint: Any) -> Callable[[Any], bool]:
    """A test of a JSON value against a type hint, built once per hint (records are many, kept maps long)."""
    if hint is Any:
        return lambda value: True
    if dataclasses.is_dataclass(hint):
        return lambda value: type(value) is dict  # its own fields are checked when it is built
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [_checker(arg) for arg in args]
        return lambda value: any(check(value) for check in options)
    if hint is type(None):
        return lambda value: value is None
    if hint is float:
        return lambda value: type(value) in (float, int)  # JSON writes 1.0 as 1 in hand-made files
    if origin is list:
        item = _checker(args[0])
        return lambda value: type(value) is list and all(map(item, value))
    if origin is dict:
        key, item = _checker(args[0]), _checker(args[1])
        return lambda value: type(value) is dict and all(key(k) and item(v) for k, v in value.items())
    return lambda value: type(value) is hint  # exact: true is no integer, 1 is no string


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """`cls(**data)` after checking that `data` is an object with exactly `cls`'s fields (those with
    a default may be left out), each of its declared type; ints stand for floats."""
    if type(data) is not dict:
        raise RunFormatError(f"{where}: expected a JSON object, found {found(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise RunFormatError(f"{where}: unknown field '{unknown[0]}'")
    hints = _hints(cls)
    values = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise RunFormatError(f"{where}: missing field '{name}'")
            continue
        value = data[name]
        if not _checker(hints[name])(value):
            raise RunFormatError(f"{where}: field '{name}' should be {_wanted(hints[name])}, found {found(value)}")
        values[name] = _convert(value, hints[name], f"{where}: {name}")
    return cls(**values)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Ints as floats where floats are declared; nested records built (and checked)."""
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        return [from_dict(typing.get_args(hint)[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    return float(value) if hint in (float, float | None) and type(value) is int else value


def to_dict(obj: Any) -> dict[str, Any]:
    """A record dataclass as its JSON object (fields in declaration order, nested records too)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if type(value) is list and value and dataclasses.is_dataclass(value[0]):
        return [to_dict(v) for v in value]
    return value


class VersionedRecord:
    """Base of the dataclasses a run's files hold: each is read in the current format only (its
    `format_version` field's default; `results.migrate` brings older files up) and written as its
    JSON object."""

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Self:
        record = from_dict(cls, data, where)
        require_version(record, cls.__dataclass_fields__["format_version"].default, where)
        return record

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def require_version(obj: Any, version: int, where: str) -> None:
    """A record built by `from_dict` must be in the current format (older ones go through results.migrate)."""
    if obj.format_version != version:
        raise RunFormatError(f"{where}: format {obj.format_version} read as format {version}")

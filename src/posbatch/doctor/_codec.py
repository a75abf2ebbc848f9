"""Frozen dataclasses ↔ plain JSON values, for the support bundle.

Only the shapes doctor uses: dataclasses, tuples, ``X | None``, str/int/bool,
``StrEnum``/``IntEnum`` and timezone-aware ``datetime`` (ISO 8601). A bundle
that does not fit the shape is a :class:`~posbatch.errors.ConfigError` naming
where it broke.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime
from typing import Any, TypeVar

from posbatch.errors import ConfigError

__all__ = ["from_json", "to_json"]

T = TypeVar("T")


def to_json(value: object) -> Any:
    """A JSON-ready copy of ``value``."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot put {type(value).__name__} into a bundle")


def from_json(kind: type[T], data: Any, where: str = "$") -> T:
    """Rebuild a ``kind`` dataclass from :func:`to_json` output."""
    return typing.cast(T, _build(kind, data, where))


def _build(kind: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _build(option, data, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors) or f"{where}: unexpected null")
    if origin is tuple:
        args = typing.get_args(kind)
        if not isinstance(data, list):
            raise ConfigError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], item, f"{where}[{i}]") for i, item in enumerate(data))
        if len(args) != len(data):
            raise ConfigError(f"{where}: expected {len(args)} items")
        return tuple(
            _build(a, item, f"{where}[{i}]")
            for i, (a, item) in enumerate(zip(args, data, strict=True))
        )
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected an object for {kind.__name__}")
        hints = typing.get_type_hints(kind)
        values = {}
        for f in dataclasses.fields(kind):
            if f.name in data:
                values[f.name] = _build(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}.{f.name}: missing")
        return kind(**values)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(data)
        except ValueError as exc:
            raise ConfigError(f"{where}: {data!r} is not a {kind.__name__}") from exc
    if kind is datetime:
        if not isinstance(data, str):
            raise ConfigError(f"{where}: expected a timestamp")
        try:
            return datetime.fromisoformat(data)
        except ValueError as exc:
            raise ConfigError(f"{where}: {data!r} is not a timestamp") from exc
    if kind is bool:
        if not isinstance(data, bool):
            raise ConfigError(f"{where}: expected true/false")
        return data
    if kind is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise ConfigError(f"{where}: expected an integer")
        return data
    if kind is str:
        if not isinstance(data, str):
            raise ConfigError(f"{where}: expected a string")
        return data
    raise ConfigError(f"{where}: unsupported type {kind!r}")

"""Attribute values beyond plain Python scalars: dialect attributes such as `#mesh.rect<x = 0, y = 0, w = 8, h = 4>`.

Plain attribute values are `bool`, `int`, `float`, `str`, `Sym` (a symbolic dim, printed `?seq`), tuples of those
(printed `[1, 2]`), numpy arrays (printed `dense<[1, 2]> : tensor<2xi64>`) and dialect attributes. A dialect attribute
is a frozen dataclass registered under a dotted name; its fields print as `key = value` in declaration order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

_DIALECT_ATTRS: dict[str, type] = {}
T = TypeVar("T")


def dialect_attr(name: str) -> Callable[[type[T]], type[T]]:
    """Register a frozen dataclass as the dialect attribute `#name<...>`."""

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"dialect attribute {name} must be a dataclass")
        cls.attr_name = name  # type: ignore[attr-defined]
        _DIALECT_ATTRS[name] = cls
        return cls

    return register


def lookup_dialect_attr(name: str) -> type | None:
    return _DIALECT_ATTRS.get(name)


def dialect_attr_fields(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, OpaqueAttr):
        return list(value.params)
    return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]


@dataclasses.dataclass(frozen=True)
class OpaqueAttr:
    """A dialect attribute nobody registered: kept and printed as written."""

    attr_name: str
    params: tuple[tuple[str, Any], ...]


def is_dialect_attr(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "attr_name")


def attr_key(value: Any) -> Any:
    """A hashable key equal for equal attribute values (numpy arrays compare by dtype, shape and bytes)."""
    if isinstance(value, np.ndarray):
        return ("dense", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(attr_key(v) for v in value)
    if isinstance(value, float) and value != value:
        return ("nan",)
    return (type(value).__name__, value)

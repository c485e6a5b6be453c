"""ONNX node converters: a table from (ONNX op type, opset) to a function that emits IR ops for one node.

    @converter("ReduceMean", since=18)          # this version applies from opset 18 on
    def reduce_mean(ctx: ConvertContext) -> list[Value | None]:
        return [ctx.emit("reduce_mean", [ctx.input(0), *ctx.optional_inputs(1)], ctx.ir_attrs("reduce_mean"))
                .result]

A converter returns one value per node output (None for an output the op does not produce). Most ONNX ops map
one-to-one onto a graph op of the same snake_case name; `same_op` registers those. One module per op family.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cgpt.ir.builder import Builder
from cgpt.ir.core import Loc, Operation, Value
from cgpt.ir.diagnostics import CgptError, ModelImportError
from cgpt.ir.registry import lookup_op

Converter = Callable[["ConvertContext"], list[Value | None]]

# op type -> [(since opset, converter)], sorted by opset
_TABLE: dict[str, list[tuple[int, Converter]]] = {}


def converter(op_type: str, since: int = 1, requires: Iterable[str] = ()) -> Callable[[Converter], Converter]:
    """Register `fn` as the converter of `op_type` from opset `since` on (until a later registration).

    `requires` names the graph ops the converter emits; without them in the registry it is not registered, so
    the op type is reported as unsupported rather than failing halfway through an import.
    """
    needed = tuple(requires)

    def register(fn: Converter) -> Converter:
        if any(lookup_op(n) is None for n in needed):
            return fn
        versions = _TABLE.setdefault(op_type, [])
        versions.append((since, fn))
        versions.sort(key=lambda v: v[0])
        return fn

    return register


def lookup_converter(op_type: str, opset: int) -> Converter | None:
    """The converter for `op_type` in a model importing `opset` of the default domain, or None."""
    _load_families()
    best = None
    for since, fn in _TABLE.get(op_type, []):
        if since <= opset:
            best = fn
    return best


def supported_op_types() -> list[str]:
    _load_families()
    return sorted(_TABLE)


def snake_case(op_type: str) -> str:
    """`LayerNormalization` -> `layer_normalization`, `GatherND` -> `gather_nd`, `IsNaN` -> `is_nan`."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", op_type)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


_NAME_EXCEPTIONS = {"IsNaN": "is_nan", "MatMul": "matmul"}


def graph_op_name(op_type: str) -> str:
    """The graph op of an ONNX op type: its snake_case name (`gather_nd`), or the one-word form (`cumsum`)
    when that is what the registry holds."""
    if op_type in _NAME_EXCEPTIONS:
        return _NAME_EXCEPTIONS[op_type]
    name = snake_case(op_type)
    if lookup_op(name) is None and lookup_op(name.replace("_", "")) is not None:
        return name.replace("_", "")
    return name


@dataclass
class ConvertContext:
    """One node being converted: its operands as IR values, its attributes as Python values, and a builder."""

    node_name: str
    op_type: str
    opset: int
    loc: Loc
    builder: Builder
    inputs: list[Value | None]
    attrs: dict[str, Any]
    where: str
    n_outputs: int
    used: set[str] = field(default_factory=set)

    # -- operands --------------------------------------------------------------------------------------------
    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def input(self, i: int) -> Value:
        """Operand i, which the op requires."""
        if not self.has(i):
            raise self.error(f"input #{i} is required")
        return self.inputs[i]  # type: ignore[return-value]

    def optional(self, i: int) -> Value | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def trailing(self, start: int) -> list[Value]:
        """Inputs from `start` on, stopping at the first absent one (an error if a later one is present)."""
        out: list[Value] = []
        for i in range(start, len(self.inputs)):
            v = self.inputs[i]
            if v is None:
                if any(w is not None for w in self.inputs[i + 1 :]):
                    raise self.error(f"input #{i} is empty but a later input is given")
                break
            out.append(v)
        return out

    def known(self, v: Value | None) -> np.ndarray | None:
        """The compile-time content of `v`, if known (constants, folded shapes)."""
        return None if v is None else self.builder.known.get(v)

    # -- attributes ------------------------------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        self.used.add(name)
        return self.attrs.get(name, default)

    def ir_attrs(
        self, op_name: str, rename: dict[str, str] | None = None, ignore: Iterable[str] = ()
    ) -> dict[str, Any]:
        """The node's attributes as the kinds graph op `op_name` declares (ints to bool, lists to tuples).

        An ONNX attribute the graph op does not declare is an error unless listed in `ignore`.
        """
        opdef = lookup_op(op_name)
        declared = opdef.attributes if opdef is not None else {}
        rename = rename or {}
        out: dict[str, Any] = {}
        for key, value in self.attrs.items():
            if key in ignore or key in self.used:
                continue
            target = rename.get(key, key)
            spec = declared.get(target)
            if spec is None:
                raise self.error(f"attribute '{key}' of {self.op_type} is not supported")
            try:
                out[target] = coerce_attr(spec.kind, value)
            except (TypeError, ValueError):
                raise self.error(f"attribute '{key}' = {value!r} is not of kind {spec.kind}") from None
        return out

    # -- building --------------------------------------------------------------------------------------------
    def emit(self, name: str, operands: list[Value], attrs: dict[str, Any] | None = None) -> Operation:
        """Create graph op `name` (types inferred); a type error is a ModelImportError naming the node."""
        try:
            return self.builder.create(name, operands, attrs or {}, loc=self.loc)
        except ModelImportError:
            raise
        except CgptError as err:
            raise ModelImportError(err.message, where=self.where) from None
        except (ValueError, TypeError, IndexError) as err:  # an op's inference tripped over malformed input
            raise ModelImportError(f"'{name}': cannot infer types ({type(err).__name__}: {err})",
                                   where=self.where) from None

    def const(self, array: Any, dtype: Any = None) -> Value:
        a = np.asarray(array, dtype=dtype)
        return self.emit("constant", [], {"value": a}).result

    def error(self, message: str) -> ModelImportError:
        return ModelImportError(message, where=self.where)


def coerce_attr(kind: Any, value: Any) -> Any:
    """An ONNX attribute value as the kind a graph op declares."""
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind in ("ints", "dims"):
        return tuple(int(v) for v in value)
    if kind == "floats":
        return tuple(float(v) for v in value)
    if kind == "str":
        return value.decode() if isinstance(value, bytes) else str(value)
    if kind == "dense":
        return np.asarray(value)
    return value


def same_op(op_type: str, since: int = 1, ignore: Iterable[str] = (), name: str | None = None) -> None:
    """Register a one-to-one converter: same operands (trailing absent ones dropped), declared attributes."""
    ir_name = name or graph_op_name(op_type)
    ignored = tuple(ignore)

    def convert(ctx: ConvertContext) -> list[Value | None]:
        op = ctx.emit(ir_name, ctx.trailing(0), ctx.ir_attrs(ir_name, ignore=ignored))
        return list(op.results)

    convert.__name__ = f"convert_{ir_name}"
    converter(op_type, since, requires=(ir_name,))(convert)


_LOADED = False


def _load_families() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from cgpt.frontend.convert import elementwise, nn, reduce, shape, source  # noqa: F401

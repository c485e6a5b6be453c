"""Creating ops with inferred result types, and tracking small values known at compile time.

    b = Builder(fn)                      # appends at the end; Builder(fn, before=op) inserts before `op`
    y = b.create("add", [x, c], loc=Loc(("/h.0/Add",))).result

Known values are small integer/bool tensors (shapes, indices) and constants, possibly holding symbolic dims
(`Sym`), computed through each op's `fold`. Type inference of shape-dependent ops (reshape with a computed shape)
reads them, which is how symbolic shapes flow through an export without specialising it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cgpt.ir.core import UNKNOWN_LOC, Function, Loc, Operation, Value
from cgpt.ir.diagnostics import VerifyError
from cgpt.ir.registry import InferContext, lookup_op
from cgpt.ir.types import TensorType

# Results with more elements than this are not tracked as known values (weights never are).
KNOWN_VALUE_LIMIT = 4096


class KnownValues:
    """Compile-time contents of small values: constants and folded shape computations."""

    def __init__(self) -> None:
        self._values: dict[Value, np.ndarray] = {}

    def get(self, v: Value) -> np.ndarray | None:
        got = self._values.get(v)
        if got is not None:
            return got
        owner = v.owner
        if owner is not None and owner.name == "constant":
            return owner.attributes["value"]
        return None

    def set(self, v: Value, array: np.ndarray) -> None:
        self._values[v] = array

    def forget(self, v: Value) -> None:
        self._values.pop(v, None)


def make_context(
    name: str, operands: list[Value | None], attrs: dict[str, Any], known: KnownValues | None, loc: Loc
) -> InferContext:
    opdef = lookup_op(name)
    full = opdef.with_defaults(attrs) if opdef is not None else dict(attrs)
    values = [known.get(v) if (known is not None and v is not None) else None for v in operands]
    return InferContext(name, [v.type if v is not None else None for v in operands], full, values, loc)


def infer_result_types(name: str, ctx: InferContext) -> list[TensorType]:
    opdef = lookup_op(name)
    if opdef is None:
        raise ctx.error("unknown op")
    return opdef.infer(ctx)


def fold_known(name: str, ctx: InferContext, results: list[TensorType]) -> list[np.ndarray | None]:
    """Fold an op's small results from known operand values; None for each result that cannot be."""
    opdef = lookup_op(name)
    none: list[np.ndarray | None] = [None] * len(results)
    if opdef is None or name == "weight":
        return none
    if any((t.numel is not None and t.numel > KNOWN_VALUE_LIMIT) for t in results):
        return none
    try:
        out = opdef.fold(ctx)
    except (ValueError, TypeError, IndexError, ZeroDivisionError, NotImplementedError, OverflowError):
        return none  # not foldable with what is known (e.g. arithmetic on a symbolic dim)
    if out is None:
        return none
    folded: list[np.ndarray | None] = []
    for arr, t in zip(out, results, strict=False):
        if arr is None:
            folded.append(None)
            continue
        arr = np.asarray(arr)
        if arr.dtype != object:
            arr = arr.astype(t.np_dtype, copy=False)
        folded.append(arr)
    return folded


class Builder:
    """Creates ops with inferred types at an insertion point and keeps known values up to date."""

    def __init__(self, fn: Function, before: Operation | None = None, known: KnownValues | None = None) -> None:
        self.fn = fn
        self.before = before
        self.known = known if known is not None else KnownValues()

    def create(
        self,
        name: str,
        operands: list[Value],
        attrs: dict[str, Any] | None = None,
        loc: Loc = UNKNOWN_LOC,
        result_types: list[TensorType] | None = None,
    ) -> Operation:
        """Create op `name`; result types are inferred unless given (weights, or ops whose types are declared)."""
        attrs = dict(attrs or {})
        ctx = make_context(name, list(operands), attrs, self.known, loc)
        types = result_types if result_types is not None else infer_result_types(name, ctx)
        op = Operation(name, operands, types, attrs, loc)
        if self.before is None:
            self.fn.append(op)
        else:
            self.fn.insert_before(self.before, op)
        for r, arr in zip(op.results, fold_known(name, ctx, types), strict=True):
            if arr is not None:
                self.known.set(r, arr)
        return op

    def constant(self, array: np.ndarray, loc: Loc = UNKNOWN_LOC) -> Value:
        return self.create("constant", [], {"value": np.asarray(array)}, loc).result

    def weight(self, key: str, type: TensorType, name_hint: str | None = None) -> Value:
        v = self.create("weight", [], {"name": key}, result_types=[type]).result
        v.name_hint = name_hint
        return v


def check_result_types(op: Operation, inferred: list[TensorType]) -> None:
    if len(inferred) != len(op.results) or any(r.type != t for r, t in zip(op.results, inferred, strict=False)):
        have = ", ".join(str(r.type) for r in op.results)
        want = ", ".join(str(t) for t in inferred)
        raise VerifyError(f"'{op.name}' result type mismatch: declared ({have}), inferred ({want})")

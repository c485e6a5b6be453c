"""Evaluate a backward slice of the IR at concrete sizes: how fusion patterns check what a subgraph computes.

Exporters build the same thing in many ways (a causal mask from Trilu, from Range + LessOrEqual, from a sliced
buffer, from dynamo's CumSum/GatherND; a head split as Reshape + Transpose or Reshape-Transpose-Reshape). Rather
than matching each spelling, a pattern evaluates the candidate subgraph at small concrete sizes and compares it
with what the fused op means.

    ev = SliceEvaluator(bindings={"batch": 2, "seq": 5}, weights=module.weights, feeds={k_proj: probe})
    mask = ev.value(mask_value)        # NotEvaluable if it depends on activations other than the feeds
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cgpt.ir.core import Value
from cgpt.ir.registry import InferContext, lookup_op
from cgpt.ir.types import Sym, TensorType, concrete_shape
from cgpt.ir.weights import WeightStore

SHAPE_OPS = ("shape", "size")
MAX_ELEMENTS = 1 << 24  # a probe larger than this is not worth computing (and an absurd shape must not allocate)


class NotEvaluable(Exception):
    """The slice depends on something the evaluator was not given (a function argument's data, an unknown op)."""


def _concrete(value: Any, bindings: dict[str, int]) -> Any:
    if isinstance(value, Sym):
        return value.evaluate(bindings)
    if isinstance(value, tuple):
        return tuple(_concrete(v, bindings) for v in value)
    return value


class SliceEvaluator:
    """Computes values backwards from a target, with symbolic dims bound to concrete sizes."""

    def __init__(
        self,
        bindings: dict[str, int],
        weights: WeightStore | None = None,
        feeds: dict[Value, np.ndarray] | None = None,
        max_ops: int = 400,
    ) -> None:
        self.bindings = bindings
        self.weights = weights
        self.memo: dict[Value, np.ndarray] = dict(feeds or {})
        self.fed = bool(feeds)  # fed arrays set the sizes; without feeds the types do, and must be bounded
        self.budget = max_ops

    def concrete_type(self, t: TensorType) -> tuple[int, ...]:
        try:
            return concrete_shape(t.shape, self.bindings)
        except ValueError as err:
            raise NotEvaluable(str(err)) from None

    def value(self, v: Value) -> np.ndarray:
        got = self.memo.get(v)
        if got is not None:
            return got
        op = v.owner
        if op is None:
            raise NotEvaluable("depends on a function argument's data")
        self.budget -= 1
        if self.budget < 0:
            raise NotEvaluable("slice too large")
        opdef = lookup_op(op.name)
        if opdef is None:
            raise NotEvaluable(f"unknown op '{op.name}'")
        attrs = {k: _concrete(a, self.bindings) for k, a in opdef.with_defaults(op.attributes).items()}
        if op.name == "weight":
            if self.weights is None or attrs["name"] not in self.weights:
                raise NotEvaluable("weight data not available")
            results = [self.weights[attrs["name"]]]
        elif op.name in SHAPE_OPS:
            types = [TensorType(self.concrete_type(x.type), x.type.dtype) for x in op.operands]
            folded = opdef.fold(InferContext(op.name, list(types), attrs, [None] * len(types), op.loc))
            if folded is None:
                raise NotEvaluable(f"'{op.name}' did not fold")
            results = folded
        else:
            for r in () if self.fed else op.results:
                try:
                    size = float(np.prod(self.concrete_type(r.type), dtype=np.float64))
                except NotEvaluable:
                    continue  # dims these bindings do not fix: the fed arrays decide the size
                if size > MAX_ELEMENTS:
                    raise NotEvaluable(f"'{op.name}' would make a tensor of {r.type} at these sizes")
            inputs = [self.value(x) for x in op.operands]
            try:
                out = opdef.kernel(list(inputs), attrs)
            except NotImplementedError:
                raise NotEvaluable(f"'{op.name}' has no kernel") from None
            results = out if isinstance(out, list) else [out]
        for r, arr in zip(op.results, results, strict=True):
            self.memo[r] = np.asarray(arr)
        return self.memo[v]

    def try_value(self, v: Value) -> np.ndarray | None:
        try:
            return self.value(v)
        except (NotEvaluable, ValueError, IndexError, TypeError):
            return None


def symbols_of(values: list[Value]) -> list[str]:
    """The symbolic dim names appearing in the types of `values`, sorted."""
    names: set[str] = set()
    for v in values:
        names.update(d for d in v.type.shape if isinstance(d, str))
    return sorted(names)

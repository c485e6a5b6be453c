"""Reductions over axes (ONNX opset 18+: axes as an optional operand, or the `axes` attribute of older opsets).

No axes reduces every axis, unless `noop_with_empty_axes` is set, which makes the op an identity. reduce_sum and
reduce_prod also fold symbolic shape values (`reduce_prod([?batch, ?seq])` is `(batch*seq)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from cgpt.ir.core import Operation
from cgpt.ir.ops.graph._base import GraphOp
from cgpt.ir.ops.graph._shapes import (
    check_dtype,
    check_one_form,
    compute_dtype,
    form_of,
    known_ints,
    moved_bytes,
    normalize_axes,
    operand_length,
    runtime_ints,
    static_numel,
)
from cgpt.ir.registry import Attr, Cost, InferContext, register_op
from cgpt.ir.types import DTYPES, FLOAT_DTYPES, INT_DTYPES, TensorType

NUMERIC = FLOAT_DTYPES | INT_DTYPES


class _Reduce(GraphOp):
    """The shared declaration: data, optional axes (operand or attribute), keepdims, noop_with_empty_axes."""

    operands = ("data", "axes?")
    attributes = {
        "axes": Attr("ints", None, "axes to reduce (or the `axes` operand); none: all"),
        "keepdims": Attr("bool", True, "keep reduced axes as 1"),
        "noop_with_empty_axes": Attr("bool", False, "no axes means identity instead of all"),
    }
    dtypes: ClassVar[frozenset[str]] = NUMERIC

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        check_dtype(ctx, x, cls.dtypes)
        keep = ctx.attrs["keepdims"]
        form = form_of(ctx, 1, "axes", required=False)
        axes = known_ints(ctx, 1, "axes")
        if form == "operand" and axes is None:
            n = operand_length(ctx, 1, "axes")
            if n > 0:  # which axes is unknown: only the rank is
                if keep:
                    return [x.with_shape(tuple(1 if d == 1 else None for d in x.shape))]
                return [x.with_shape((None,) * (x.rank - n))]
            axes = ()
        if not axes:
            if ctx.attrs["noop_with_empty_axes"]:
                return [x]
            axes = tuple(range(x.rank))
        reduced = set(normalize_axes(ctx, axes, x.rank))
        if keep:
            return [x.with_shape(tuple(1 if i in reduced else d for i, d in enumerate(x.shape)))]
        return [x.with_shape(tuple(d for i, d in enumerate(x.shape) if i not in reduced))]

    @classmethod
    def verify(cls, op: Operation) -> None:
        check_one_form(op, 1, "axes", required=False)
        axes = op.attributes.get("axes")
        if axes is not None:
            normalize_axes(op.name, axes, op.operands[0].type.rank)

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = inputs[0]
        axes = runtime_ints(inputs, 1, attrs, "axes")
        if not axes:
            if attrs["noop_with_empty_axes"]:
                return x
            axes = list(range(x.ndim))
        return cls.reduce(x, tuple(axes), bool(attrs["keepdims"]))

    @classmethod
    def reduce(cls, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        n = static_numel(in_types[:1])
        return Cost(0 if n is None else n, moved_bytes(in_types[:1], out_types))


def _empty_identity(x: np.ndarray, lowest: bool) -> dict[str, Any]:
    """ONNX reduces an empty set to the identity of max (lowest value) or min (highest); numpy refuses."""
    if x.size or x.dtype == object:
        return {}
    if x.dtype == np.bool_:
        return {"initial": not lowest}
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return {"initial": info.min if lowest else info.max}
    return {"initial": -np.inf if lowest else np.inf}


def _accumulate(fn: Any, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Sum or product accumulated in f32 for halves; integer dtypes are kept (numpy would widen i32)."""
    if x.dtype == object:
        return fn(x, axis=axes, keepdims=keepdims)
    dt = compute_dtype(x.dtype)
    return fn(x, axis=axes, keepdims=keepdims, dtype=dt).astype(x.dtype, copy=False)


@register_op
class ReduceSum(_Reduce):
    """Sum over axes.

        %y = reduce_sum(%x) {axes = [-1], keepdims = false} : (tensor<2x3xf32>) -> tensor<2xf32>
    """

    name = "reduce_sum"
    symbolic = True

    @classmethod
    def reduce(cls, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return _accumulate(np.sum, x, axes, keepdims)


@register_op
class ReduceProd(_Reduce):
    """Product over axes (folds symbolic shape values into a Sym product).

        %n = reduce_prod(%s) {keepdims = false} : (tensor<2xi64>) -> tensor<i64>
    """

    name = "reduce_prod"
    symbolic = True

    @classmethod
    def reduce(cls, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return _accumulate(np.prod, x, axes, keepdims)


@register_op
class ReduceMean(_Reduce):
    """Arithmetic mean over axes (integer means truncate toward zero).

        %y = reduce_mean(%x) {axes = [-1]} : (tensor<2x3xf32>) -> tensor<2x1xf32>
    """

    name = "reduce_mean"

    @classmethod
    def reduce(cls, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        if x.dtype.kind in "iu":
            count = int(np.prod([x.shape[a] for a in axes]))
            total = np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
            return (np.sign(total) * (np.abs(total) // count)).astype(x.dtype)
        return np.mean(x, axis=axes, keepdims=keepdims, dtype=compute_dtype(x.dtype)).astype(x.dtype, copy=False)


@register_op
class ReduceMax(_Reduce):
    """Maximum over axes.

        %y = reduce_max(%x) {axes = [1], keepdims = false} : (tensor<2x3xf32>) -> tensor<2xf32>
    """

    name = "reduce_max"
    dtypes = frozenset(DTYPES)

    @classmethod
    def reduce(cls, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.max(x, axis=axes, keepdims=keepdims, **_empty_identity(x, lowest=True))


@register_op
class ReduceMin(_Reduce):
    """Minimum over axes.

        %y = reduce_min(%x) {axes = [1], keepdims = false} : (tensor<2x3xf32>) -> tensor<2xf32>
    """

    name = "reduce_min"
    dtypes = frozenset(DTYPES)

    @classmethod
    def reduce(cls, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.min(x, axis=axes, keepdims=keepdims, **_empty_identity(x, lowest=False))

"""Indexing ops: slice, gather, gather_nd, scatter_nd, and the index-shaped trilu and cumsum.

Slice's starts/ends/axes/steps and cumsum's axis may be operands (newer ONNX opsets) or attributes of the same
name, one form each; an attribute form is a suffix (slice's operands stay positional). Slice and gather fold
symbolic shape values (`gather(shape(%x), 1)` is `?seq`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cgpt.ir.core import Operation
from cgpt.ir.diagnostics import VerifyError
from cgpt.ir.ops.graph._base import GraphOp
from cgpt.ir.ops.graph._shapes import (
    SLICE_TO_END,
    check_dtype,
    check_one_form,
    compute_dtype,
    form_of,
    known_dims,
    known_ints,
    moved_bytes,
    normalize_axes,
    normalize_axis,
    runtime_ints,
    static_numel,
)
from cgpt.ir.registry import Attr, Cost, InferContext, register_op
from cgpt.ir.types import FLOAT_DTYPES, INT_DTYPES, Dim, TensorType

INDEX_DTYPES = frozenset({"i64", "i32"})


# -- slice -----------------------------------------------------------------------------------------------------------
def onnx_slice(start: int, end: int, step: int, dim: int) -> slice:
    """ONNX's clamping of one axis' start/end as a Python slice (a negative-step end before 0 is `None`)."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, end if end >= 0 else None, step)


def _slice_dim(dim: Dim, start: Dim, end: Dim, step: int) -> Dim:
    """The length of one sliced axis; symbolic only when certain (`0:INT_MAX` or `0:?seq` of `?seq`), else None."""
    if isinstance(dim, int) and isinstance(start, int) and isinstance(end, int):
        return len(range(*onnx_slice(start, end, step, dim).indices(dim)))
    if step != 1 or start != 0:
        return None
    if (isinstance(end, int) and end >= SLICE_TO_END) or (end is not None and end == dim):
        return dim
    return None


_SLICE_PARTS = ("starts", "ends", "axes", "steps")


@register_op
class Slice(GraphOp):
    """Elements start:end:step along the given axes (ONNX clamping; missing axes are 0.., steps are 1).

        %y = slice(%x) {axes = [2], ends = [?seq], starts = [0]} : (tensor<1x1x?seqx2048xbool>) -> tensor<1x1x?seqx2048xbool>
    """  # noqa: E501

    name = "slice"
    operands = ("data", "starts?", "ends?", "axes?", "steps?")
    attributes = {
        "starts": Attr("dims", None, "first index per axis (or operand #1)"),
        "ends": Attr("dims", None, "end index per axis, exclusive (or operand #2)"),
        "axes": Attr("ints", None, "the sliced axes (or operand #3); none: 0, 1, ..."),
        "steps": Attr("ints", None, "step per axis, nonzero (or operand #4); none: 1"),
    }
    symbolic = True

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        given = [form_of(ctx, i + 1, part, part in ("starts", "ends")) for i, part in enumerate(_SLICE_PARTS)]
        starts, ends = known_dims(ctx, 1, "starts"), known_dims(ctx, 2, "ends")
        axes, steps = known_ints(ctx, 3, "axes"), known_ints(ctx, 4, "steps")
        if given[2] is not None and axes is None:  # which axes is unknown
            return [x.with_shape((None,) * x.rank)]
        lengths = {len(p) for p in (starts, ends, axes, steps) if p is not None}
        if len(lengths) > 1:
            raise ctx.error("starts, ends, axes and steps must have one length")
        n = lengths.pop() if lengths else None
        if axes is None:
            if n is None:  # starts, ends, steps all unknown and no axes: the leading axes
                n = ctx.type(1).shape[0] if ctx.has(1) else None
                if not isinstance(n, int):
                    return [x.with_shape((None,) * x.rank)]
            axes = tuple(range(n))
        sliced = normalize_axes(ctx, axes, x.rank)
        out = list(x.shape)
        for j, a in enumerate(sliced):
            step = steps[j] if steps is not None else (1 if given[3] is None else None)
            if step == 0:
                raise ctx.error("steps must not be 0")
            if starts is None or ends is None or step is None:
                out[a] = None
            else:
                out[a] = _slice_dim(x.shape[a], starts[j], ends[j], step)
        return [x.with_shape(tuple(out))]

    @classmethod
    def verify(cls, op: Operation) -> None:
        for i, part in enumerate(_SLICE_PARTS):
            check_one_form(op, i + 1, part, required=part in ("starts", "ends"))
        given = [op.attributes[p] for p in _SLICE_PARTS if op.attributes.get(p) is not None]
        if len({len(g) for g in given}) > 1:
            raise VerifyError(f"'{op.name}': attributes starts, ends, axes and steps must have one length")
        if op.attributes.get("axes") is not None:
            normalize_axes(op.name, op.attributes["axes"], op.operands[0].type.rank)
        if 0 in (op.attributes.get("steps") or ()):
            raise VerifyError(f"'{op.name}': attribute 'steps' must not hold 0")

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = inputs[0]
        starts = runtime_ints(inputs, 1, attrs, "starts")
        ends = runtime_ints(inputs, 2, attrs, "ends")
        axes = runtime_ints(inputs, 3, attrs, "axes") or list(range(len(starts)))
        steps = runtime_ints(inputs, 4, attrs, "steps") or [1] * len(starts)
        index = [slice(None)] * x.ndim
        for s, e, a, k in zip(starts, ends, axes, steps, strict=True):
            index[a] = onnx_slice(s, e, k, x.shape[a])
        return x[tuple(index)]


# -- gather, gather_nd, scatter_nd -----------------------------------------------------------------------------------
@register_op
class Gather(GraphOp):
    """Take entries along `axis` at integer indices (negative ones count from the end).

        %d = gather(%s, %i) {axis = 0} : (tensor<3xi64>, tensor<i64>) -> tensor<i64>
    """

    name = "gather"
    operands = ("data", "indices")
    attributes = {"axis": Attr("int", 0, "the indexed axis")}
    symbolic = True

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        data, indices = ctx.type(0), ctx.type(1)
        check_dtype(ctx, indices, INDEX_DTYPES, "indices")
        axis = normalize_axis(ctx, ctx.attrs["axis"], data.rank)
        return [data.with_shape(data.shape[:axis] + indices.shape + data.shape[axis + 1:])]

    @classmethod
    def verify(cls, op: Operation) -> None:
        normalize_axis(op.name, cls.with_defaults(op.attributes)["axis"], op.operands[0].type.rank)

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        data, indices = inputs[0], inputs[1]
        if indices.dtype == object:
            raise ValueError("gather: symbolic indices")
        return np.take(data, indices, axis=attrs["axis"])


def _gather_nd_index(data_shape: Sequence[int], indices: np.ndarray, batch_dims: int) -> tuple[Any, ...]:
    """The numpy advanced index of gather_nd/scatter_nd over data viewed as (batch, *rest)."""
    batch = math.prod(data_shape[:batch_dims])
    k = indices.shape[-1]
    flat = indices.reshape(batch, -1, k) if indices.size else indices.reshape(batch, 0, k)
    return (np.arange(batch)[:, None],) + tuple(flat[..., j] for j in range(k))


@register_op
class GatherNd(GraphOp):
    """Gather slices of `data` addressed by the last dim of `indices` (after `batch_dims` shared leading dims).

        %y = gather_nd(%x, %i) : (tensor<4x5x6xf32>, tensor<3x2xi64>) -> tensor<3x6xf32>
    """

    name = "gather_nd"
    operands = ("data", "indices")
    attributes = {"batch_dims": Attr("int", 0, "number of leading dims shared by data and indices", min=0)}
    symbolic = True

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        data, indices = ctx.type(0), ctx.type(1)
        check_dtype(ctx, indices, {"i64"}, "indices")
        b = ctx.attrs["batch_dims"]
        k = indices.shape[-1] if indices.rank else None
        if not isinstance(k, int) or b >= indices.rank or b + k > data.rank:
            raise ctx.error(f"indices {indices} cannot address data {data} with batch_dims = {b}")
        return [data.with_shape(indices.shape[:-1] + data.shape[b + k:])]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        data, indices = inputs[0], inputs[1]
        b, k = attrs["batch_dims"], indices.shape[-1]
        batch = math.prod(data.shape[:b])
        flat = data.reshape((batch,) + data.shape[b:])
        out = flat[_gather_nd_index(data.shape, indices, b)]
        return out.reshape(indices.shape[:-1] + data.shape[b + k:])


_SCATTER = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


@register_op
class ScatterNd(GraphOp):
    """A copy of `data` with the slices addressed by `indices` replaced by (or reduced with) `updates`.

        %y = scatter_nd(%x, %i, %u) {reduction = "add"} : (tensor<8xf32>, tensor<4x1xi64>, tensor<4xf32>) -> tensor<8xf32>
    """  # noqa: E501

    name = "scatter_nd"
    operands = ("data", "indices", "updates")
    attributes = {
        "reduction": Attr("str", "none", "how updates combine with data", ("none", "add", "mul", "max", "min")),
    }

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        data, indices, updates = ctx.type(0), ctx.type(1), ctx.type(2)
        check_dtype(ctx, indices, {"i64"}, "indices")
        if updates.dtype != data.dtype:
            raise ctx.error(f"updates {updates} must have the dtype of data {data}")
        k = indices.shape[-1] if indices.rank else None
        if isinstance(k, int) and updates.rank != indices.rank - 1 + data.rank - k:
            raise ctx.error(f"updates {updates} do not fit indices {indices} into data {data}")
        return [data]

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        n = static_numel(in_types[2:3])
        flops = 0 if n is None or attrs.get("reduction", "none") == "none" else n
        return Cost(flops, moved_bytes(in_types, out_types))

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        data, indices, updates = inputs
        out = data.copy()
        k = indices.shape[-1]
        flat = indices.reshape(-1, k)
        index = tuple(flat[:, j] for j in range(k))
        values = updates.reshape((flat.shape[0],) + data.shape[k:])
        if attrs["reduction"] == "none":
            out[index] = values
        else:
            _SCATTER[attrs["reduction"]].at(out, index, values)
        return out


# -- trilu, cumsum ---------------------------------------------------------------------------------------------------
@register_op
class Trilu(GraphOp):
    """The upper (or lower) triangle of the last two dims from diagonal k (optional operand), zeros elsewhere.

        %m = trilu(%x) {upper = false} : (tensor<?seqx?seqxf32>) -> tensor<?seqx?seqxf32>
    """

    name = "trilu"
    operands = ("x", "k?")
    attributes = {"upper": Attr("bool", True, "keep the upper triangle (else the lower)")}

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        if x.rank < 2:
            raise ctx.error(f"operand must have rank >= 2, got {x}")
        if ctx.has(1):
            check_dtype(ctx, ctx.type(1), {"i64"}, "k")
        return [x]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = inputs[0]
        k = int(np.asarray(inputs[1]).reshape(())) if len(inputs) > 1 and inputs[1] is not None else 0
        return np.triu(x, k) if attrs["upper"] else np.tril(x, k)


@register_op
class CumSum(GraphOp):
    """Running sum along `axis` (operand or attribute), optionally exclusive of the element or from the end.

        %y = cumsum(%x) {axis = 1, exclusive = true} : (tensor<2x3xi64>) -> tensor<2x3xi64>
    """

    name = "cumsum"
    operands = ("x", "axis?")
    attributes = {
        "axis": Attr("int", None, "the summed axis (or the scalar `axis` operand)"),
        "exclusive": Attr("bool", False, "sum only the elements before"),
        "reverse": Attr("bool", False, "sum from the end"),
    }
    flops_per_element = 1

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        check_dtype(ctx, x, FLOAT_DTYPES | INT_DTYPES)
        form_of(ctx, 1, "axis")
        axis = known_ints(ctx, 1, "axis") if ctx.has(1) else (ctx.attrs["axis"],)
        if axis is not None:
            normalize_axis(ctx, axis[0], x.rank)
        return [x]

    @classmethod
    def verify(cls, op: Operation) -> None:
        check_one_form(op, 1, "axis")
        if op.attributes.get("axis") is not None:
            normalize_axis(op.name, op.attributes["axis"], op.operands[0].type.rank)

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = inputs[0]
        axis = attrs["axis"] if attrs.get("axis") is not None else int(np.asarray(inputs[1]).reshape(()))
        y = np.flip(x, axis) if attrs["reverse"] else x
        dt = compute_dtype(x.dtype)
        total = np.cumsum(y, axis=axis, dtype=dt)
        if attrs["exclusive"]:
            shifted = np.zeros_like(total)
            src = [slice(None)] * x.ndim
            dst = [slice(None)] * x.ndim
            src[axis], dst[axis] = slice(None, -1), slice(1, None)
            shifted[tuple(dst)] = total[tuple(src)]
            total = shifted
        if attrs["reverse"]:
            total = np.flip(total, axis)
        return np.ascontiguousarray(total).astype(x.dtype, copy=False)


"""Shape ops: reshape, flatten, squeeze, unsqueeze, transpose, expand, concat, split, shape, size, identity,
constant_of_shape, range.

Data that newer ONNX opsets pass as an operand (reshape's shape, squeeze's axes ...) may instead be an attribute of
the same name; exactly one form is given. All of these fold symbolic shape values (`Sym` entries), so
`shape -> gather -> unsqueeze -> concat -> reshape` chains resolve to `reshape {shape = [?batch, ?seq, 12, 64]}`.
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
    as_dim,
    broadcast_shapes,
    check_dtype,
    check_one_form,
    check_same_dtype,
    dims_array,
    dims_product,
    dims_quotient,
    form_of,
    is_nonnegative,
    known_dims,
    known_ints,
    merge_equal_dims,
    moved_bytes,
    normalize_axes,
    normalize_axis,
    operand_length,
    plain,
    runtime_ints,
)
from cgpt.ir.registry import Attr, Cost, InferContext, register_op
from cgpt.ir.types import FLOAT_DTYPES, INT_DTYPES, Dim, Sym, TensorType, type_of_array


# -- reshape, flatten, squeeze, unsqueeze, transpose -----------------------------------------------------------------
def _reshape_dims(ctx: InferContext, dims: Sequence[Dim], target: Sequence[Dim], allowzero: bool) -> tuple[Dim, ...]:
    """Resolve 0 (copy the input dim, unless allowzero) and -1 (the remaining size) in a reshape target."""
    out = list(target)
    for i, d in enumerate(target):
        if isinstance(d, int) and d < -1:
            raise ctx.error(f"target shape {list(target)} has a negative dim other than -1")
        if d == 0 and not allowzero:
            if i >= len(dims):
                raise ctx.error(f"target shape {list(target)} copies dim {i} (0) but the input has rank {len(dims)}")
            out[i] = dims[i]
    holes = [i for i, d in enumerate(out) if d == -1]
    if len(holes) > 1:
        raise ctx.error(f"target shape {list(target)} has more than one -1")
    if holes:
        rest = [d for i, d in enumerate(out) if i != holes[0]]
        out[holes[0]] = dims_quotient(dims, rest)
        have, other = dims_product(dims), dims_product(rest)
        if isinstance(have, int) and isinstance(other, int) and (other == 0 or have % other):
            raise ctx.error(f"cannot reshape {have} elements into {list(target)}")
    else:
        have, want = dims_product(dims), dims_product(out)
        if isinstance(have, int) and isinstance(want, int) and have != want:
            raise ctx.error(f"cannot reshape {have} elements into {list(target)}")
    return tuple(out)


@register_op
class Reshape(GraphOp):
    """Same elements, new shape: 0 copies the input dim (unless allowzero), -1 takes what is left.

        %y = reshape(%x) {shape = [?batch, ?seq, 12, 64]} : (tensor<?batchx?seqx768xf32>) -> tensor<?batchx?seqx12x64xf32>
    """  # noqa: E501

    name = "reshape"
    operands = ("data", "shape?")
    attributes = {
        "shape": Attr("dims", None, "target shape (or the `shape` operand)"),
        "allowzero": Attr("bool", False, "0 means an empty dim, not a copy of the input dim"),
    }
    symbolic = True

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        form_of(ctx, 1, "shape")
        target = known_dims(ctx, 1, "shape")
        if target is None:
            return [x.with_shape((None,) * operand_length(ctx, 1, "shape"))]
        return [x.with_shape(_reshape_dims(ctx, x.shape, target, ctx.attrs["allowzero"]))]

    @classmethod
    def verify(cls, op: Operation) -> None:
        check_one_form(op, 1, "shape")

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = inputs[0]
        raw = attrs["shape"] if attrs.get("shape") is not None else inputs[1].reshape(-1).tolist()
        symbols = [i for i, d in enumerate(raw) if isinstance(d, str)]
        if len(symbols) == 1 and -1 not in raw:  # one symbolic dim is whatever is left, like -1
            raw = [-1 if i == symbols[0] else d for i, d in enumerate(raw)]
        elif symbols:
            raise ValueError(f"reshape target {list(raw)} holds symbolic dims: bind symbols to sizes before running")
        shape = [x.shape[i] if (int(d) == 0 and not attrs["allowzero"]) else int(d) for i, d in enumerate(raw)]
        return np.reshape(x, shape)


@register_op
class Flatten(GraphOp):
    """A 2-D view: dims before `axis` multiply into the first dim, the rest into the second.

        %y = flatten(%x) {axis = 2} : (tensor<?batchx?seqx768xf32>) -> tensor<?"(batch*seq)"x768xf32>
    """

    name = "flatten"
    operands = ("x",)
    attributes = {"axis": Attr("int", 1, "first dim of the second group, in [-rank, rank]")}
    symbolic = True

    @classmethod
    def _axis(cls, ctx: InferContext | str, axis: int, rank: int) -> int:
        return normalize_axis(ctx, axis, rank + 1) if axis >= 0 else normalize_axis(ctx, axis, rank)

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        axis = cls._axis(ctx, ctx.attrs["axis"], x.rank)
        return [x.with_shape((dims_product(x.shape[:axis]), dims_product(x.shape[axis:])))]

    @classmethod
    def verify(cls, op: Operation) -> None:
        cls._axis(op.name, cls.with_defaults(op.attributes)["axis"], op.operands[0].type.rank)

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = inputs[0]
        axis = attrs["axis"] if attrs["axis"] >= 0 else attrs["axis"] + x.ndim
        return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@register_op
class Squeeze(GraphOp):
    """Remove dims of size 1: those at `axes`, or every one when no axes are given.

        %y = squeeze(%x) {axes = [1]} : (tensor<?batchx1x768xf32>) -> tensor<?batchx768xf32>
    """

    name = "squeeze"
    operands = ("data", "axes?")
    attributes = {"axes": Attr("ints", None, "axes to remove (or the `axes` operand); none: every 1")}
    symbolic = True

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        form = form_of(ctx, 1, "axes", required=False)
        axes = known_ints(ctx, 1, "axes")
        if form == "operand" and axes is None:
            n = operand_length(ctx, 1, "axes")
            if n > 0:
                return [x.with_shape((None,) * (x.rank - n))]
        if not axes:
            if not all(isinstance(d, int) for d in x.shape):
                raise ctx.error(f"squeeze without axes of {x}: whether a symbolic dim is 1 is not known, give axes")
            return [x.with_shape(tuple(d for d in x.shape if d != 1))]
        removed = normalize_axes(ctx, axes, x.rank)
        for a in removed:
            if isinstance(x.shape[a], int) and x.shape[a] != 1:
                raise ctx.error(f"cannot squeeze axis {a} of {x}: its size is {x.shape[a]}, not 1")
        return [x.with_shape(tuple(d for i, d in enumerate(x.shape) if i not in removed))]

    @classmethod
    def verify(cls, op: Operation) -> None:
        check_one_form(op, 1, "axes", required=False)
        if op.attributes.get("axes") is not None:
            normalize_axes(op.name, op.attributes["axes"], op.operands[0].type.rank)

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        axes = runtime_ints(inputs, 1, attrs, "axes")
        return np.squeeze(inputs[0], axis=tuple(axes) if axes else None)


@register_op
class Unsqueeze(GraphOp):
    """Insert dims of size 1 at `axes` (positions in the result).

        %y = unsqueeze(%x) {axes = [0]} : (tensor<i64>) -> tensor<1xi64>
    """

    name = "unsqueeze"
    operands = ("data", "axes?")
    attributes = {"axes": Attr("ints", None, "result positions of the new dims (or the `axes` operand)")}
    symbolic = True

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        form_of(ctx, 1, "axes")
        axes = known_ints(ctx, 1, "axes")
        if axes is None:
            return [x.with_shape((None,) * (x.rank + operand_length(ctx, 1, "axes")))]
        rank = x.rank + len(axes)
        inserted = set(normalize_axes(ctx, axes, rank))
        rest = iter(x.shape)
        return [x.with_shape(tuple(1 if i in inserted else next(rest) for i in range(rank)))]

    @classmethod
    def verify(cls, op: Operation) -> None:
        check_one_form(op, 1, "axes")
        axes = op.attributes.get("axes")
        if axes is not None:
            normalize_axes(op.name, axes, op.operands[0].type.rank + len(axes))

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return np.expand_dims(inputs[0], tuple(runtime_ints(inputs, 1, attrs, "axes") or ()))


@register_op
class Transpose(GraphOp):
    """Permute dims: result dim i is input dim perm[i] (default: reversed).

        %y = transpose(%x) {perm = [0, 2, 1, 3]} : (tensor<?batchx?seqx12x64xf32>) -> tensor<?batchx12x?seqx64xf32>
    """

    name = "transpose"
    operands = ("data",)
    attributes = {"perm": Attr("ints", None, "the permutation; none: reverse the dims")}
    symbolic = True

    @classmethod
    def _perm(cls, ctx: InferContext | str, perm: Sequence[int] | None, rank: int) -> list[int]:
        if perm is None:
            return list(range(rank))[::-1]
        if sorted(perm) != list(range(rank)):
            name = ctx if isinstance(ctx, str) else ctx.op_name
            message = f"attribute 'perm' = {list(perm)} is not a permutation of 0..{rank - 1}"
            if isinstance(ctx, InferContext):
                raise ctx.error(message)
            raise VerifyError(f"'{name}': {message}")
        return list(perm)

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        perm = cls._perm(ctx, ctx.attrs["perm"], x.rank)
        return [x.with_shape(tuple(x.shape[p] for p in perm))]

    @classmethod
    def verify(cls, op: Operation) -> None:
        cls._perm(op.name, op.attributes.get("perm"), op.operands[0].type.rank)

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return np.transpose(inputs[0], attrs["perm"])


# -- expand, concat, split -------------------------------------------------------------------------------------------
@register_op
class Expand(GraphOp):
    """Broadcast to `shape` (numpy rules both ways: a 1 in `shape` keeps the input dim).

        %y = expand(%x) {shape = [?batch, 1, ?seq, ?seq]} : (tensor<1x1x?seqx?seqxbool>) -> tensor<?batchx1x?seqx?seqxbool>
    """  # noqa: E501

    name = "expand"
    operands = ("data", "shape?")
    attributes = {"shape": Attr("dims", None, "the shape to broadcast to (or the `shape` operand)")}
    symbolic = True

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        form_of(ctx, 1, "shape")
        target = known_dims(ctx, 1, "shape")
        if target is None:
            target = (None,) * operand_length(ctx, 1, "shape")
        return [x.with_shape(broadcast_shapes(ctx, [x.shape, target]))]

    @classmethod
    def verify(cls, op: Operation) -> None:
        check_one_form(op, 1, "shape")

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = inputs[0]
        shape = np.broadcast_shapes(x.shape, tuple(runtime_ints(inputs, 1, attrs, "shape") or ()))
        return np.array(np.broadcast_to(x, shape))  # a real copy: broadcast views are read-only with 0 strides


@register_op
class Concat(GraphOp):
    """Join operands along `axis`; other dims must match.

        %s = concat(%a, %b) {axis = 0} : (tensor<2xi64>, tensor<2xi64>) -> tensor<4xi64>
    """

    name = "concat"
    operands = ("inputs*",)
    attributes = {"axis": Attr("int", doc="the axis to join along")}
    symbolic = True

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        types = [ctx.type(i) for i in range(len(ctx.types))]
        if not types:
            raise ctx.error("needs at least one operand")
        dtype = check_same_dtype(ctx, types)
        rank = types[0].rank
        if any(t.rank != rank for t in types):
            raise ctx.error(f"operands must have one rank, got {', '.join(map(str, types))}")
        axis = normalize_axis(ctx, ctx.attrs["axis"], rank)
        out = list(types[0].shape)
        for t in types[1:]:
            for i, d in enumerate(t.shape):
                if i == axis:
                    out[i] = None if out[i] is None or d is None else out[i] + d
                    continue
                try:
                    out[i] = merge_equal_dims(out[i], d)
                except ValueError:
                    raise ctx.error(f"dim {i} differs between operands: {', '.join(map(str, types))}") from None
        return [TensorType(tuple(out), dtype)]

    @classmethod
    def verify(cls, op: Operation) -> None:
        normalize_axis(op.name, op.attributes["axis"], op.operands[0].type.rank)

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return np.concatenate(inputs, axis=attrs["axis"])


@register_op
class Split(GraphOp):
    """Cut along `axis` into pieces of sizes `split` (operand or attribute) or into `num_outputs` (last smaller).

        %q, %k, %v = split(%x) {axis = -1, num_outputs = 3} : (tensor<?batchx?seqx2304xf32>) -> (tensor<?batchx?seqx768xf32>, tensor<?batchx?seqx768xf32>, tensor<?batchx?seqx768xf32>)
    """  # noqa: E501

    name = "split"
    operands = ("data", "split?")
    results = ("outputs*",)
    attributes = {
        "axis": Attr("int", 0, "the axis to cut"),
        "split": Attr("dims", None, "piece sizes (or the `split` operand)"),
        "num_outputs": Attr("int", None, "number of equal pieces", min=1),
    }
    symbolic = True

    @classmethod
    def _sizes(cls, dim: Dim, n: int) -> list[Dim]:
        if not isinstance(dim, int):
            return [None] * n
        chunk = -(-dim // n)
        return [chunk] * (n - 1) + [dim - chunk * (n - 1)]

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        axis = normalize_axis(ctx, ctx.attrs["axis"], x.rank)
        form = form_of(ctx, 1, "split", required=False)
        n = ctx.attrs["num_outputs"]
        if (form is None) == (n is None):
            raise ctx.error("give exactly one of 'split' (operand or attribute) and 'num_outputs'")
        if form is None:
            sizes = cls._sizes(x.shape[axis], n)
        else:
            known = known_dims(ctx, 1, "split")
            sizes = list(known) if known is not None else [None] * operand_length(ctx, 1, "split")
        if any(isinstance(s, int) and s < 0 for s in sizes):
            raise ctx.error(f"split sizes {sizes} of {x} along axis {axis} must not be negative")
        static = all(isinstance(s, int) for s in sizes) and isinstance(x.shape[axis], int)
        if static and sum(sizes) != x.shape[axis]:  # type: ignore[arg-type]
            raise ctx.error(f"split sizes {sizes} do not add up to dim {axis} of {x}")
        return [x.with_shape(x.shape[:axis] + (s,) + x.shape[axis + 1:]) for s in sizes]

    @classmethod
    def verify(cls, op: Operation) -> None:
        check_one_form(op, 1, "split", required=False)
        normalize_axis(op.name, cls.with_defaults(op.attributes)["axis"], op.operands[0].type.rank)

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> list[np.ndarray]:
        x = inputs[0]
        axis = attrs["axis"]
        sizes = runtime_ints(inputs, 1, attrs, "split")
        if sizes is None:
            sizes = cls._sizes(x.shape[axis], attrs["num_outputs"])
        return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


# -- shape, size, identity -------------------------------------------------------------------------------------------
@register_op
class Shape(GraphOp):
    """The input's dims (from `start` up to `end`, Python-slice style) as an i64 vector; folds to symbolic dims.

        %s = shape(%x) : (tensor<?batchx?seqx768xf32>) -> tensor<3xi64>
    """

    name = "shape"
    operands = ("data",)
    attributes = {"start": Attr("int", 0, "first dim"), "end": Attr("int", None, "one past the last dim")}

    @classmethod
    def _dims(cls, t: TensorType, attrs: dict[str, Any]) -> tuple[Dim, ...]:
        return t.shape[attrs["start"]:attrs["end"]]

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        return [TensorType((len(cls._dims(ctx.type(0), ctx.attrs)),), "i64")]

    @classmethod
    def fold(cls, ctx: InferContext) -> list[np.ndarray] | None:
        dims = cls._dims(ctx.type(0), ctx.attrs)
        return None if any(d is None for d in dims) else [dims_array(dims)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return np.array(inputs[0].shape[attrs["start"]:attrs["end"]], dtype=np.int64)

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        return Cost(0, moved_bytes([], out_types))  # reads only the type, never the data


@register_op
class Size(GraphOp):
    """The number of elements as an i64 scalar; folds to a symbolic product.

        %n = size(%x) : (tensor<?batchx?seqx768xf32>) -> tensor<i64>
    """

    name = "size"
    operands = ("data",)

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        return [TensorType((), "i64")]

    @classmethod
    def fold(cls, ctx: InferContext) -> list[np.ndarray] | None:
        n = dims_product(ctx.type(0).shape)
        if n is None:
            return None
        if isinstance(n, Sym):
            out = np.empty((), dtype=object)
            out[()] = n
            return [out]
        return [np.array(n, dtype=np.int64)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return np.array(inputs[0].size, dtype=np.int64)

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        return Cost(0, moved_bytes([], out_types))


@register_op
class Identity(GraphOp):
    """The input itself.

        %y = identity(%x) : (tensor<2x3xf32>) -> tensor<2x3xf32>
    """

    name = "identity"
    operands = ("x",)
    symbolic = True

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        return [ctx.type(0)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return inputs[0]


# -- constant_of_shape, range ----------------------------------------------------------------------------------------
@register_op
class ConstantOfShape(GraphOp):
    """A tensor of the given shape (a 1-D i64 operand) filled with `value` (a one-element array; default f32 0).

        %m = constant_of_shape(%s) {value = dense<[1]> : tensor<1xi64>} : (tensor<2xi64>) -> tensor<?x?xi64>
    """

    name = "constant_of_shape"
    operands = ("shape",)
    attributes = {"value": Attr("dense", np.zeros(1, dtype=np.float32), "the fill value: one element")}

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        value = np.asarray(ctx.attrs["value"])
        if value.size != 1:
            raise ctx.error(f"attribute 'value' must hold one element, got shape {list(value.shape)}")
        check_dtype(ctx, ctx.type(0), {"i64"}, "shape")
        dtype = type_of_array(value).dtype
        shape = ctx.value(0)
        if shape is None:
            return [TensorType((None,) * operand_length(ctx, 0, "shape"), dtype)]
        return [TensorType(tuple(as_dim(d) for d in np.asarray(shape).reshape(-1)), dtype)]

    @classmethod
    def verify(cls, op: Operation) -> None:
        value = op.attributes.get("value")
        if value is not None and np.asarray(value).size != 1:
            raise VerifyError(f"'{op.name}': attribute 'value' must hold one element, got {np.asarray(value).size}")

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        value = np.asarray(attrs["value"])
        return np.full(tuple(int(d) for d in inputs[0].reshape(-1)), value.reshape(())[()], dtype=value.dtype)


def _range_length(start: Any, limit: Any, delta: Any) -> Dim:
    """max(ceil((limit - start) / delta), 0), symbolic for `range(0, ?n, 1)`, else None when not certain."""
    if any(isinstance(v, str) for v in (start, limit, delta)):
        if start == 0 and delta == 1 and isinstance(limit, Sym) and is_nonnegative(limit):
            return limit
        if isinstance(start, Sym) and start == limit:
            return 0
        return None
    if all(isinstance(v, (int, np.integer)) for v in (start, limit, delta)):
        return max(-((int(start) - int(limit)) // int(delta)), 0)
    return max(math.ceil((float(limit) - float(start)) / float(delta)), 0)


@register_op
class Range(GraphOp):
    """start, start + delta, ... up to `limit` (exclusive), from scalars of one dtype (range(0, ?n, 1) has ?n).

        %p = range(%start, %limit, %delta) : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
    """

    name = "range"
    operands = ("start", "limit", "delta")

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        types = [ctx.type(i) for i in range(3)]
        dtype = check_same_dtype(ctx, types)
        check_dtype(ctx, types[0], FLOAT_DTYPES | INT_DTYPES)
        if any(t.numel not in (1, None) or t.rank > 1 for t in types):
            raise ctx.error(f"start, limit and delta must be scalars, got {', '.join(map(str, types))}")
        values = [ctx.value(i) for i in range(3)]
        if any(v is None for v in values):
            return [TensorType((None,), dtype)]
        scalars = [np.asarray(v).reshape(-1)[0] for v in values]
        if not isinstance(scalars[2], str) and scalars[2] == 0:
            raise ctx.error("delta must not be 0")
        return [TensorType((_range_length(*[plain(s) for s in scalars]),), dtype)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        start, limit, delta = (np.asarray(v).reshape(()) for v in inputs)
        dt = start.dtype
        if dt.kind in "iu":
            return np.arange(int(start), int(limit), int(delta), dtype=dt)
        s, lim, d = float(start), float(limit), float(delta)
        n = max(math.ceil((lim - s) / d), 0)
        return (s + np.arange(n, dtype=np.float64) * d).astype(dt)


"""Elementwise graph ops: unary and binary math, comparisons, logic, where, cast, max/min, clip (ONNX semantics,
numpy broadcasting). Integer add/sub/mul/div, where and the comparisons also fold symbolic shape values."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.special

from cgpt.ir.ops.graph._base import TRANSCENDENTAL_FLOPS, GraphOp
from cgpt.ir.ops.graph._shapes import (
    BF16,
    blockwise,
    broadcast_shapes,
    check_dtype,
    check_same_dtype,
    has_symbols,
    is_nonnegative,
    plain,
    symbolic_map,
    tidy,
    via_f32,
    widen,
)
from cgpt.ir.registry import Attr, InferContext, register_op
from cgpt.ir.types import DTYPES, FLOAT_DTYPES, INT_DTYPES, NUMPY_DTYPES, Sym, TensorType

NUMERIC = FLOAT_DTYPES | INT_DTYPES
Kernel = Callable[..., np.ndarray]


# -- unary math ------------------------------------------------------------------------------------------------------
class _Unary(GraphOp):
    """One operand, one result of the same type; `fn` is the numpy function (bf16 is computed in f32)."""

    operands = ("x",)
    dtypes: ClassVar[frozenset[str]] = FLOAT_DTYPES
    flops_per_element = 1
    fn: ClassVar[Kernel]

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        check_dtype(ctx, ctx.type(0), cls.dtypes)
        return [ctx.type(0)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return via_f32(cls.fn, inputs[0])


@register_op
class Sqrt(_Unary):
    """Square root.

        %y = sqrt(%x) : (tensor<4xf32>) -> tensor<4xf32>
    """

    name = "sqrt"
    fn = staticmethod(np.sqrt)


# erf(x) ~ x P(x^2) / Q(x^2) on [-4, 4] (Eigen's and XLA's f32 rational approximation; |erf(4)| rounds to 1 in f32).
_ERF_P = tuple(np.float32(c) for c in (
    -2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
    -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02))
_ERF_Q = tuple(np.float32(c) for c in (
    -1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
    -1.42647390514189e-02))


def erf_f32(x: np.ndarray) -> np.ndarray:
    """erf in f32 to within 8 ulp (5e-7 relative), about 10x faster than scipy.special.erf, whose f32 loop goes
    through a scalar double routine: at GPT sizes that alone would cost more than onnxruntime's whole GELU."""
    x = np.clip(x.astype(np.float32, copy=False), np.float32(-4.0), np.float32(4.0))
    x2 = x * x
    p = x2 * _ERF_P[0]
    for c in _ERF_P[1:-1]:
        p += c
        p *= x2
    p += _ERF_P[-1]
    p *= x
    q = x2 * _ERF_Q[0]
    for c in _ERF_Q[1:-1]:
        q += c
        q *= x2
    q += _ERF_Q[-1]
    p /= q
    return np.clip(p, np.float32(-1.0), np.float32(1.0), out=p)  # the rational overshoots 1 by an ulp or two


def _erf(x: np.ndarray) -> np.ndarray:
    return blockwise(erf_f32, x, x.dtype)


@register_op
class Erf(_Unary):
    """The error function.

        %y = erf(%x) : (tensor<4xf32>) -> tensor<4xf32>
    """

    name = "erf"
    flops_per_element = TRANSCENDENTAL_FLOPS
    fn = staticmethod(_erf)


@register_op
class Tanh(_Unary):
    """Hyperbolic tangent.

        %y = tanh(%x) : (tensor<4xf32>) -> tensor<4xf32>
    """

    name = "tanh"
    flops_per_element = TRANSCENDENTAL_FLOPS
    fn = staticmethod(np.tanh)


@register_op
class Exp(_Unary):
    """Natural exponential.

        %y = exp(%x) : (tensor<4xf32>) -> tensor<4xf32>
    """

    name = "exp"
    flops_per_element = TRANSCENDENTAL_FLOPS
    fn = staticmethod(np.exp)


@register_op
class Log(_Unary):
    """Natural logarithm.

        %y = log(%x) : (tensor<4xf32>) -> tensor<4xf32>
    """

    name = "log"
    flops_per_element = TRANSCENDENTAL_FLOPS
    fn = staticmethod(np.log)


@register_op
class Reciprocal(_Unary):
    """1 / x.

        %y = reciprocal(%x) : (tensor<4xf32>) -> tensor<4xf32>
    """

    name = "reciprocal"
    fn = staticmethod(np.reciprocal)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return scipy.special.expit(x.astype(np.float32) if x.dtype == np.float16 else x)


@register_op
class Sigmoid(_Unary):
    """The logistic function 1 / (1 + exp(-x)).

        %y = sigmoid(%x) : (tensor<4xf32>) -> tensor<4xf32>
    """

    name = "sigmoid"
    flops_per_element = TRANSCENDENTAL_FLOPS + 2
    fn = staticmethod(_sigmoid)


@register_op
class Neg(_Unary):
    """Negation.

        %y = neg(%x) : (tensor<4xi64>) -> tensor<4xi64>
    """

    name = "neg"
    dtypes = NUMERIC
    fn = staticmethod(np.negative)


@register_op
class Abs(_Unary):
    """Absolute value.

        %y = abs(%x) : (tensor<4xf32>) -> tensor<4xf32>
    """

    name = "abs"
    dtypes = NUMERIC
    fn = staticmethod(np.abs)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, x.dtype.type(0))


@register_op
class Relu(_Unary):
    """max(x, 0).

        %y = relu(%x) : (tensor<2x3xf32>) -> tensor<2x3xf32>
    """

    name = "relu"
    dtypes = NUMERIC
    fn = staticmethod(_relu)


# -- binary math -----------------------------------------------------------------------------------------------------
class _Binary(GraphOp):
    """Two operands of one dtype with numpy broadcasting. `on_symbols` (if set) folds object arrays with Syms."""

    operands = ("x", "y")
    dtypes: ClassVar[frozenset[str]] = NUMERIC
    flops_per_element = 1
    fn: ClassVar[Kernel]
    on_symbols: ClassVar[Callable[[Any, Any], Any] | None] = None

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        a, b = ctx.type(0), ctx.type(1)
        dtype = check_same_dtype(ctx, [a, b])
        check_dtype(ctx, a, cls.dtypes)
        return [TensorType(broadcast_shapes(ctx, [a.shape, b.shape]), dtype)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return via_f32(cls.fn, inputs[0], inputs[1])

    @classmethod
    def fold(cls, ctx: InferContext) -> list[np.ndarray] | None:
        a, b = ctx.value(0), ctx.value(1)
        if a is not None and b is not None and has_symbols([a, b]) and cls.on_symbols is not None:
            return [symbolic_map(cls.on_symbols, a, b)]
        return super().fold(ctx)


def _sym_sub(a: Any, b: Any) -> Any:
    a, b = plain(a), plain(b)
    return 0 if isinstance(a, Sym) and a == b else a - b


def _trunc_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division rounding toward zero (ONNX, C), not numpy's floor."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.floor_divide(a, b)
        fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return q + fix.astype(q.dtype)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        return _trunc_div(a, b)
    return np.divide(a, b)


def _sym_div(a: Any, b: Any) -> Any:
    a, b = plain(a), plain(b)
    if isinstance(a, int) and isinstance(b, int):
        return int(_trunc_div(np.int64(a), np.int64(b)))
    if isinstance(a, Sym) and a == b:
        return 1
    if isinstance(a, Sym) and isinstance(b, int) and b > 0:
        return a / b
    raise ValueError(f"cannot fold {a} / {b}")


@register_op
class Add(_Binary):
    """Elementwise sum with numpy broadcasting.

        %z = add(%x, %y) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    """

    name = "add"
    fn = staticmethod(np.add)
    on_symbols = staticmethod(lambda a, b: plain(a) + plain(b))


@register_op
class Sub(_Binary):
    """Elementwise difference with numpy broadcasting.

        %z = sub(%x, %y) : (tensor<2x3xf32>, tensor<2x1xf32>) -> tensor<2x3xf32>
    """

    name = "sub"
    fn = staticmethod(np.subtract)
    on_symbols = staticmethod(_sym_sub)


@register_op
class Mul(_Binary):
    """Elementwise product with numpy broadcasting.

        %z = mul(%x, %y) : (tensor<2x3xf32>, tensor<f32>) -> tensor<2x3xf32>
    """

    name = "mul"
    fn = staticmethod(np.multiply)
    on_symbols = staticmethod(lambda a, b: plain(a) * plain(b))


@register_op
class Div(_Binary):
    """Elementwise quotient with numpy broadcasting; integer division truncates toward zero.

        %z = div(%x, %y) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    """

    name = "div"
    fn = staticmethod(_div)
    on_symbols = staticmethod(_sym_div)


def _pow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iu" and y.dtype.kind == "f":
        return np.power(x.astype(np.float64), y).astype(x.dtype)
    if x.dtype.kind == "f" and y.size == 1 and float(y.reshape(-1)[0]) in (2.0, 3.0):
        # as onnxruntime does; and powf of a negative base is ~100x slower than multiplying
        out = x * x if float(y.reshape(-1)[0]) == 2.0 else x * x * x
        return out.reshape(np.broadcast_shapes(x.shape, y.shape))
    return np.power(x, y)


@register_op
class Pow(GraphOp):
    """x raised to y, broadcasting; the result has x's dtype (y may have any numeric dtype).

        %z = pow(%x, %y) : (tensor<2x3xf32>, tensor<f32>) -> tensor<2x3xf32>
    """

    name = "pow"
    operands = ("x", "y")
    flops_per_element = 2 * TRANSCENDENTAL_FLOPS  # exp(y * log(x))

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        a, b = ctx.type(0), ctx.type(1)
        check_dtype(ctx, a, NUMERIC, "base")
        check_dtype(ctx, b, NUMERIC, "exponent")
        return [TensorType(broadcast_shapes(ctx, [a.shape, b.shape]), a.dtype)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x, y = inputs[0], inputs[1]
        return via_f32(_pow, x, widen(y))


# -- variadic max / min, clip ----------------------------------------------------------------------------------------
class _Variadic(GraphOp):
    operands = ("inputs*",)
    flops_per_element = 1
    fn: ClassVar[Kernel]

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        types = [ctx.type(i) for i in range(len(ctx.types))]
        if not types:
            raise ctx.error("needs at least one operand")
        dtype = check_same_dtype(ctx, types)
        check_dtype(ctx, types[0], NUMERIC)
        return [TensorType(broadcast_shapes(ctx, [t.shape for t in types]), dtype)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        arrays = [widen(a) for a in inputs]
        out = arrays[0]
        for a in arrays[1:]:
            out = cls.fn(out, a)
        shape = np.broadcast_shapes(*[a.shape for a in arrays])
        out = np.broadcast_to(out, shape) if out.shape != shape else out
        return np.array(out, dtype=inputs[0].dtype)


@register_op
class Max(_Variadic):
    """Elementwise maximum of one or more operands, broadcasting (NaN propagates).

        %z = max(%x, %y) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    """

    name = "max"
    fn = staticmethod(np.maximum)


@register_op
class Min(_Variadic):
    """Elementwise minimum of one or more operands, broadcasting (NaN propagates).

        %z = min(%x, %y) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
    """

    name = "min"
    fn = staticmethod(np.minimum)


@register_op
class Clip(GraphOp):
    """x limited to [min, max]; each bound is an optional scalar operand (when min > max every value becomes max).

        %y = clip(%x, %lo, %hi) : (tensor<2x3xf32>, tensor<f32>, tensor<f32>) -> tensor<2x3xf32>
    """

    name = "clip"
    operands = ("x", "min?", "max?")
    flops_per_element = 2

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        check_dtype(ctx, x, NUMERIC)
        for i in (1, 2):
            if ctx.has(i):
                t = ctx.type(i)
                if t.dtype != x.dtype or t.numel not in (1, None) or t.rank > 1:
                    raise ctx.error(f"bound #{i} must be a scalar {x.dtype} tensor, got {t}")
        return [x]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = inputs[0]
        out = widen(x)
        if len(inputs) > 1 and inputs[1] is not None:
            out = np.maximum(out, widen(inputs[1]).reshape(()))
        if len(inputs) > 2 and inputs[2] is not None:
            out = np.minimum(out, widen(inputs[2]).reshape(()))
        return out.astype(x.dtype, copy=False) if out is not x else np.array(x)


# -- comparisons and logic -------------------------------------------------------------------------------------------
def _interval(v: Any) -> tuple[float, float]:
    if isinstance(v, Sym):
        return (0.0, math.inf) if is_nonnegative(v) else (-math.inf, math.inf)
    return (float(v), float(v))


def _certain_compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """A comparison of dims that answers only when certain (symbolic dims are >= 0), else raises ValueError."""

    def compare(a: Any, b: Any) -> bool:
        a, b = plain(a), plain(b)
        if not isinstance(a, Sym) and not isinstance(b, Sym):
            return bool(op(a, b))
        if isinstance(a, Sym) and a == b:
            return bool(op(0, 0))
        (alo, ahi), (blo, bhi) = _interval(a), _interval(b)
        if op is operator.eq:
            if ahi < blo or bhi < alo:  # disjoint ranges
                return False
        else:  # an order comparison is certain when it is the same at every corner of the two ranges
            corners = {bool(op(x, y)) for x in (alo, ahi) for y in (blo, bhi) if not (math.isinf(x) and x == y)}
            if len(corners) == 1:
                return corners.pop()
        raise ValueError(f"cannot decide {a} {op.__name__} {b} at compile time")

    return compare


class _Compare(GraphOp):
    """Broadcasting comparison giving bool; symbolic dims fold only when the answer is certain."""

    operands = ("x", "y")
    dtypes: ClassVar[frozenset[str]] = NUMERIC
    flops_per_element = 1
    fn: ClassVar[Kernel]
    on_symbols: ClassVar[Callable[[Any, Any], bool]]

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        a, b = ctx.type(0), ctx.type(1)
        check_same_dtype(ctx, [a, b])
        check_dtype(ctx, a, cls.dtypes)
        return [TensorType(broadcast_shapes(ctx, [a.shape, b.shape]), "bool")]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return cls.fn(widen(inputs[0]), widen(inputs[1]))

    @classmethod
    def fold(cls, ctx: InferContext) -> list[np.ndarray] | None:
        a, b = ctx.value(0), ctx.value(1)
        if a is not None and b is not None and has_symbols([a, b]):
            return [symbolic_map(cls.on_symbols, a, b).astype(np.bool_)]
        return super().fold(ctx)


@register_op
class Equal(_Compare):
    """x == y, broadcasting. `?seq == -1` folds to false (dims are never negative); `?seq == 5` does not fold.

        %z = equal(%x, %y) : (tensor<4xi64>, tensor<i64>) -> tensor<4xbool>
    """

    name = "equal"
    dtypes = frozenset(DTYPES)
    fn = staticmethod(np.equal)
    on_symbols = staticmethod(_certain_compare(operator.eq))


@register_op
class Less(_Compare):
    """x < y, broadcasting.

        %z = less(%x, %y) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xbool>
    """

    name = "less"
    fn = staticmethod(np.less)
    on_symbols = staticmethod(_certain_compare(operator.lt))


@register_op
class LessOrEqual(_Compare):
    """x <= y, broadcasting.

        %z = less_or_equal(%x, %y) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xbool>
    """

    name = "less_or_equal"
    fn = staticmethod(np.less_equal)
    on_symbols = staticmethod(_certain_compare(operator.le))


@register_op
class Greater(_Compare):
    """x > y, broadcasting.

        %z = greater(%x, %y) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xbool>
    """

    name = "greater"
    fn = staticmethod(np.greater)
    on_symbols = staticmethod(_certain_compare(operator.gt))


@register_op
class GreaterOrEqual(_Compare):
    """x >= y, broadcasting.

        %z = greater_or_equal(%x, %y) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xbool>
    """

    name = "greater_or_equal"
    fn = staticmethod(np.greater_equal)
    on_symbols = staticmethod(_certain_compare(operator.ge))


@register_op
class Not(_Unary):
    """Logical negation.

        %y = not(%x) : (tensor<4xbool>) -> tensor<4xbool>
    """

    name = "not"
    dtypes = frozenset({"bool"})
    fn = staticmethod(np.logical_not)


@register_op
class And(_Binary):
    """Logical and, broadcasting.

        %z = and(%x, %y) : (tensor<2x3xbool>, tensor<3xbool>) -> tensor<2x3xbool>
    """

    name = "and"
    dtypes = frozenset({"bool"})
    fn = staticmethod(np.logical_and)


@register_op
class Or(_Binary):
    """Logical or, broadcasting.

        %z = or(%x, %y) : (tensor<2x3xbool>, tensor<3xbool>) -> tensor<2x3xbool>
    """

    name = "or"
    dtypes = frozenset({"bool"})
    fn = staticmethod(np.logical_or)


@register_op
class IsNan(GraphOp):
    """Whether each element is NaN.

        %y = is_nan(%x) : (tensor<4xf32>) -> tensor<4xbool>
    """

    name = "is_nan"
    operands = ("x",)
    flops_per_element = 1

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        check_dtype(ctx, ctx.type(0), FLOAT_DTYPES)
        return [ctx.type(0).with_dtype("bool")]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return np.isnan(widen(inputs[0]))


@register_op
class IsInf(GraphOp):
    """Whether each element is an infinity (of the detected signs).

        %y = is_inf(%x) {detect_negative = false} : (tensor<4xf32>) -> tensor<4xbool>
    """

    name = "is_inf"
    operands = ("x",)
    attributes = {
        "detect_negative": Attr("bool", True, "map -inf to true"),
        "detect_positive": Attr("bool", True, "map +inf to true"),
    }
    flops_per_element = 1

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        check_dtype(ctx, ctx.type(0), FLOAT_DTYPES)
        return [ctx.type(0).with_dtype("bool")]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = widen(inputs[0])
        inf = np.isinf(x)
        if attrs["detect_negative"] and attrs["detect_positive"]:
            return inf
        if attrs["detect_positive"]:
            return inf & (x > 0)
        if attrs["detect_negative"]:
            return inf & (x < 0)
        return np.zeros(x.shape, dtype=np.bool_)


# -- where, cast -----------------------------------------------------------------------------------------------------
@register_op
class Where(GraphOp):
    """x where condition is true, else y; all three broadcast. Folds symbolic shape values.

        %z = where(%c, %x, %y) : (tensor<1x1x4x4xbool>, tensor<2x12x4x4xf32>, tensor<f32>) -> tensor<2x12x4x4xf32>
    """

    name = "where"
    operands = ("condition", "x", "y")
    symbolic = True
    flops_per_element = 1

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        c, x, y = ctx.type(0), ctx.type(1), ctx.type(2)
        check_dtype(ctx, c, {"bool"}, "condition")
        dtype = check_same_dtype(ctx, [x, y])
        return [TensorType(broadcast_shapes(ctx, [c.shape, x.shape, y.shape]), dtype)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        c, x, y = inputs
        if c.dtype == object:
            raise ValueError("where: the condition is not known")
        return np.where(c, x, y)


@register_op
class Cast(GraphOp):
    """Convert to dtype `to` (float to int truncates toward zero; symbolic dims survive int to int casts).

        %y = cast(%x) {to = "f32"} : (tensor<2x3xi64>) -> tensor<2x3xf32>
    """

    name = "cast"
    operands = ("x",)
    attributes = {"to": Attr("str", doc="the result dtype", choices=DTYPES)}
    symbolic = True
    flops_per_element = 1

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        return [ctx.type(0).with_dtype(ctx.attrs["to"])]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x, to = inputs[0], attrs["to"]
        if x.dtype == object:
            if to not in INT_DTYPES:
                raise ValueError(f"cannot cast symbolic dims to {to}")
            return tidy(x)
        target = NUMPY_DTYPES[to]
        if x.dtype == target:
            return x
        if x.dtype == BF16 and target not in (np.dtype(np.float32),):
            x = x.astype(np.float32)
        return x.astype(target)

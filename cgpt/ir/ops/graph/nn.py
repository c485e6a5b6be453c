"""Neural-network graph ops: softmax, layer_normalization, gelu (ONNX opsets 13, 17, 20). Half precisions are
computed in f32 and cast back, as onnxruntime does."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cgpt.ir.core import Operation
from cgpt.ir.ops.graph._base import TRANSCENDENTAL_FLOPS, GraphOp
from cgpt.ir.ops.graph._shapes import blockwise, check_dtype, check_same_dtype, compute_dtype, normalize_axis
from cgpt.ir.ops.graph.elementwise import erf_f32
from cgpt.ir.registry import Attr, InferContext, register_op
from cgpt.ir.types import FLOAT_DTYPES, TensorType


@register_op
class Softmax(GraphOp):
    """exp(x) / sum(exp(x)) along one axis (computed stably: x - max first).

        %y = softmax(%x) {axis = -1} : (tensor<1x12x?seqx?seqxf32>) -> tensor<1x12x?seqx?seqxf32>
    """

    name = "softmax"
    operands = ("x",)
    attributes = {"axis": Attr("int", -1, "the axis to normalise")}
    flops_per_element = TRANSCENDENTAL_FLOPS + 4  # max, subtract, exp, sum, divide

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        check_dtype(ctx, x, FLOAT_DTYPES)
        normalize_axis(ctx, ctx.attrs["axis"], x.rank)
        return [x]

    @classmethod
    def verify(cls, op: Operation) -> None:
        normalize_axis(op.name, cls.with_defaults(op.attributes)["axis"], op.operands[0].type.rank)

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = inputs[0]
        axis = attrs["axis"]
        x32 = x.astype(compute_dtype(x.dtype), copy=False)
        e = x32 - x32.max(axis=axis, keepdims=True)
        np.exp(e, out=e)
        e /= e.sum(axis=axis, keepdims=True)
        return e.astype(x.dtype, copy=False)


@register_op
class LayerNormalization(GraphOp):
    """(x - mean) / sqrt(var + epsilon) * scale + bias over the dims from `axis` on (no Mean/InvStdDev results).

        %y = layer_normalization(%x, %g, %b) {axis = -1, epsilon = 1.0e-05} : (tensor<?batchx?seqx768xf32>, tensor<768xf32>, tensor<768xf32>) -> tensor<?batchx?seqx768xf32>
    """  # noqa: E501

    name = "layer_normalization"
    operands = ("x", "scale", "bias?")
    attributes = {
        "axis": Attr("int", -1, "first normalised axis"),
        "epsilon": Attr("float", 1e-5, "added to the variance", min=0.0),
        "stash_type": Attr("int", 1, "dtype of the statistics (1: f32, the only one supported)", choices=(1,)),
    }
    flops_per_element = 8  # mean, subtract, square, mean, scale by rsqrt, multiply, add

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x = ctx.type(0)
        check_dtype(ctx, x, FLOAT_DTYPES)
        check_same_dtype(ctx, [x] + [ctx.type(i) for i in (1, 2) if ctx.has(i)])
        axis = normalize_axis(ctx, ctx.attrs["axis"], x.rank)
        normalized = x.shape[axis:]
        for i in (1, 2):
            if not ctx.has(i):
                continue
            t = ctx.type(i)
            fits = t.rank <= len(normalized) and all(
                not (isinstance(a, int) and isinstance(b, int) and a not in (1, b))
                for a, b in zip(reversed(t.shape), reversed(normalized), strict=False)
            )
            if not fits:
                raise ctx.error(f"operand #{i} of type {t} does not broadcast to the normalised dims of {x}")
        return [x]

    @classmethod
    def verify(cls, op: Operation) -> None:
        normalize_axis(op.name, cls.with_defaults(op.attributes)["axis"], op.operands[0].type.rank)

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x, scale = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        axis = attrs["axis"] % x.ndim
        axes = tuple(range(axis, x.ndim))
        x32 = x.astype(np.float32, copy=False)
        mean = x32.mean(axis=axes, keepdims=True)
        d = x32 - mean
        var = np.mean(np.square(d), axis=axes, keepdims=True)
        var += np.float32(attrs["epsilon"])
        np.sqrt(var, out=var)
        d /= var
        d *= scale.astype(np.float32, copy=False)
        if bias is not None:
            d += bias.astype(np.float32, copy=False)
        return d.astype(x.dtype, copy=False)


_SQRT_HALF = np.float32(1.0 / math.sqrt(2.0))
_SQRT_2_OVER_PI = np.float32(math.sqrt(2.0 / math.pi))


@register_op
class Gelu(GraphOp):
    """Gaussian error linear unit: 0.5 x (1 + erf(x / sqrt 2)), or the tanh approximation.

        %y = gelu(%x) {approximate = "none"} : (tensor<?batchx?seqx3072xf32>) -> tensor<?batchx?seqx3072xf32>
    """

    name = "gelu"
    operands = ("x",)
    attributes = {"approximate": Attr("str", "none", "exact erf form, or its tanh approximation", ("none", "tanh"))}
    flops_per_element = TRANSCENDENTAL_FLOPS + 4

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        check_dtype(ctx, ctx.type(0), FLOAT_DTYPES)
        return [ctx.type(0)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x = inputs[0]
        fn = _gelu_tanh if attrs["approximate"] == "tanh" else _gelu_erf
        return blockwise(fn, x, x.dtype)


def _gelu_erf(x: np.ndarray) -> np.ndarray:
    x32 = x.astype(np.float32, copy=False)
    t = erf_f32(x32 * _SQRT_HALF)
    t += np.float32(1.0)
    t *= x32
    t *= np.float32(0.5)
    return t


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    x32 = x.astype(np.float32, copy=False)
    t = x32 * x32
    t *= np.float32(0.044715)
    t += np.float32(1.0)
    t *= x32
    t *= _SQRT_2_OVER_PI
    np.tanh(t, out=t)
    t += np.float32(1.0)
    t *= x32
    t *= np.float32(0.5)
    return t

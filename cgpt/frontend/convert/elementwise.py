"""Elementwise ONNX ops: math, comparisons, logic, Where, Cast, Max/Min, Clip, Identity."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from cgpt.frontend.convert import ConvertContext, converter, same_op
from cgpt.ir.core import Value

for _op in (
    "Sqrt",
    "Erf",
    "Tanh",
    "Exp",
    "Log",
    "Reciprocal",
    "Sigmoid",
    "Neg",
    "Abs",
    "Relu",
    "Not",
    "IsNaN",
    "Floor",
    "Ceil",
    "Sin",
    "Cos",
    "Softplus",
    "Sign",
    "Round",
):
    same_op(_op)
same_op("IsInf")
for _op in (
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Where",
    "Mod",
    "BitwiseAnd",
):
    same_op(_op)

# ONNX element types that have an IR dtype
_CAST_TO = {
    TensorProto.FLOAT: "f32",
    TensorProto.FLOAT16: "f16",
    TensorProto.BFLOAT16: "bf16",
    TensorProto.INT64: "i64",
    TensorProto.INT32: "i32",
    TensorProto.BOOL: "bool",
}


@converter("Identity")
def identity(ctx: ConvertContext) -> list[Value | None]:
    """No op: the output is the input value."""
    return [ctx.input(0)]


@converter("Cast", requires=("cast",))
def cast(ctx: ConvertContext) -> list[Value | None]:
    to = int(ctx.attr("to"))
    dtype = _CAST_TO.get(to)
    if dtype is None:
        name = TensorProto.DataType.Name(to).lower() if to in TensorProto.DataType.values() else f"#{to}"
        raise ctx.error(f"Cast to {name} is not supported (the IR has f32, f16, bf16, i64, i32, bool)")
    ctx.attr("saturate")  # only affects float8 targets
    ctx.attr("round_mode")
    return [ctx.emit("cast", [ctx.input(0)], {"to": dtype}).result]


@converter("CastLike", requires=("cast",))
def cast_like(ctx: ConvertContext) -> list[Value | None]:
    ctx.attr("saturate")
    ctx.attr("round_mode")
    return [ctx.emit("cast", [ctx.input(0)], {"to": ctx.input(1).type.dtype}).result]


@converter("Clip", requires=("clip", "constant"))
def clip(ctx: ConvertContext) -> list[Value | None]:
    """Clip(x, min?, max?): an absent min before a given max becomes the dtype's lowest value."""
    x = ctx.input(0)
    low, high = ctx.optional(1), ctx.optional(2)
    if low is None and high is not None:
        dt = x.type.np_dtype
        lowest = np.finfo(dt).min if dt.kind == "f" else np.iinfo(dt).min
        low = ctx.const(np.array(lowest, dtype=dt))
    operands = [x] + [v for v in (low, high) if v is not None]
    return [ctx.emit("clip", operands, ctx.ir_attrs("clip")).result]

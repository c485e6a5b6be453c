"""Neural-network ONNX ops: MatMul, Gemm, Softmax, LayerNormalization, Gelu."""

from __future__ import annotations

from cgpt.frontend.convert import ConvertContext, converter, same_op
from cgpt.ir.core import Value

same_op("MatMul")
same_op("Gemm")
same_op("Softmax", since=13)
same_op("LogSoftmax", since=13)
same_op("Gelu", since=20)


@converter("LayerNormalization", since=17, requires=("layer_normalization",))
def layer_normalization(ctx: ConvertContext) -> list[Value | None]:
    """Only the normalised output; Mean and InvStdDev (outputs 1 and 2) are refused if used."""
    op = ctx.emit("layer_normalization", ctx.trailing(0), ctx.ir_attrs("layer_normalization"))
    return [op.result]

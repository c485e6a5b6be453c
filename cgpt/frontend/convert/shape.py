"""Shape and data-movement ONNX ops: Reshape, (Un)Squeeze, Concat, Slice, Gather, Split, Transpose, Shape,
Expand, Range, ConstantOfShape, Flatten, Tile, Trilu. Data-as-input forms map to optional trailing
operands."""

from __future__ import annotations

import numpy as np

from cgpt.frontend.convert import ConvertContext, converter, same_op
from cgpt.ir.core import Value

for _op in (
    "Reshape",
    "Concat",
    "Gather",
    "GatherND",
    "GatherElements",
    "Transpose",
    "Shape",
    "Expand",
    "Range",
    "ConstantOfShape",
    "Flatten",
    "Tile",
    "Size",
    "Trilu",
    "Pad",
    "ScatterND",
    "OneHot",
):
    same_op(_op)
# axes: an attribute before opset 13, an optional input since; the graph ops take either form
same_op("Squeeze")
same_op("Unsqueeze")


@converter("Slice", since=10, requires=("slice", "constant"))
def slice_(ctx: ConvertContext) -> list[Value | None]:
    """Slice(data, starts, ends, axes?, steps?): absent axes before given steps become 0..len(starts)-1."""
    data, starts, ends = ctx.input(0), ctx.input(1), ctx.input(2)
    axes, steps = ctx.optional(3), ctx.optional(4)
    if axes is None and steps is not None:
        n = starts.type.shape[0] if starts.type.rank == 1 else None
        if not isinstance(n, int):
            raise ctx.error("Slice without axes needs starts of static length")
        axes = ctx.const(np.arange(n, dtype=starts.type.np_dtype))
    operands = [data, starts, ends] + [v for v in (axes, steps) if v is not None]
    return [ctx.emit("slice", operands, ctx.ir_attrs("slice")).result]


@converter("Split", since=13, requires=("split",))
def split(ctx: ConvertContext) -> list[Value | None]:
    """Split(x, split?) with as many outputs as the node names (`num_outputs` from opset 18 says the same)."""
    attrs = ctx.ir_attrs("split", ignore=("num_outputs",))
    num = ctx.attr("num_outputs")
    if num is not None and int(num) != ctx.n_outputs:
        raise ctx.error(f"num_outputs = {num}, but the node has {ctx.n_outputs} outputs")
    operands = ctx.trailing(0)
    if len(operands) == 1:
        attrs["num_outputs"] = ctx.n_outputs
    return list(ctx.emit("split", operands, attrs).results)

"""The base of graph ops: folding through the kernel (guarded against symbolic values) and a per-element cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from cgpt.ir.ops.graph._shapes import as_value, has_symbols, moved_bytes, static_numel
from cgpt.ir.registry import Cost, InferContext, OpDef
from cgpt.ir.types import TensorType

# FLOPs counted for one exp, log, tanh or erf: a range reduction plus a short polynomial, as vector units do it.
TRANSCENDENTAL_FLOPS = 8


class GraphOp(OpDef):
    """A graph-level (ONNX-like) op.

    `symbolic = True` lets `fold` run the kernel on object arrays holding `Sym` dims (the kernel must then only
    index, reshape or combine them with Sym arithmetic); other ops never fold symbolic values, so a string compare
    of two Syms can never masquerade as arithmetic. `flops_per_element` (of the first result) sets the cost.
    """

    level = "graph"
    symbolic: ClassVar[bool] = False
    flops_per_element: ClassVar[int] = 0

    @classmethod
    def fold(cls, ctx: InferContext) -> list[np.ndarray] | None:
        if any(v is None for v, t in zip(ctx.values, ctx.types, strict=False) if t is not None):
            return None
        if not cls.symbolic and has_symbols(ctx.values):
            return None
        out = cls.kernel(list(ctx.values), ctx.attrs)
        return [as_value(o) for o in (out if isinstance(out, list) else [out])]

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        n = static_numel(out_types[:1])
        flops = 0 if n is None else n * cls.flops_per_element
        return Cost(flops=flops, bytes=moved_bytes(in_types, out_types))

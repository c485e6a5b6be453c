"""normalize-gemm: Gemm into plain matmul (+ add) form, so one linear pattern covers MatMul and Gemm exports.

    gemm(%a, %b, %c) {transB = true}   ->   add(matmul(%a, transpose(%b) {perm = [1, 0]}), %c)

alpha and beta other than 1 become multiplies; a transposed weight stays a transpose op (fuse-linear reads it
as `transpose_w`, so the weight is never copied).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cgpt.ir.core import Module, Operation, Value
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns


class GemmToMatmul(RewritePattern):
    name = "gemm-to-matmul"
    root = "gemm"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        attrs = op.attributes
        a, b = op.operands[0], op.operands[1]
        dtype = op.result.type.np_dtype

        def scaled(v: Value, factor: float) -> Value:
            if factor == 1.0:
                return v
            return rw.create("mul", [v, rw.constant(np.array(factor, dtype=dtype), op.loc)], loc=op.loc).result

        if attrs.get("transA", False):
            a = rw.create("transpose", [a], {"perm": (1, 0)}, op.loc).result
        if attrs.get("transB", False):
            b = rw.create("transpose", [b], {"perm": (1, 0)}, op.loc).result
        out = scaled(rw.create("matmul", [a, b], loc=op.loc).result, float(attrs.get("alpha", 1.0)))
        if len(op.operands) > 2 and float(attrs.get("beta", 1.0)) != 0.0:
            c = scaled(op.operands[2], float(attrs.get("beta", 1.0)))
            out = rw.create("add", [out, c], loc=op.loc).result
        if out.type != op.result.type:
            return False
        rw.replace_op(op, [out])
        return True


@register_pass
@dataclass
class NormalizeGemm(Pass):
    """Rewrite gemm as matmul, transpose, mul and add."""

    name: ClassVar[str] = "normalize-gemm"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        return apply_patterns(module, [GemmToMatmul()], ctx)

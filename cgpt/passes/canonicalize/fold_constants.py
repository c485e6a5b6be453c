"""fold-constants: replace pure ops whose results are known at compile time by inline constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.ir.core import Module, Operation
from cgpt.ir.ops.source import INLINE_CONSTANT_LIMIT
from cgpt.ir.registry import lookup_op
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns


class FoldToConstant(RewritePattern):
    """An op whose every result is a known small numeric tensor becomes `constant` ops.

    Known values come from the registry's folding (reference kernels on constants, shape ops on types), so weights
    (never known values) are never copied, and results over the inline limit stay as ops.
    """

    name = "fold-to-constant"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        if op.name in ("constant", "weight"):
            return False
        opdef = lookup_op(op.name)
        if opdef is None or not opdef.pure or not any(r.uses for r in op.results):
            return False
        values = [rw.value_of(r) for r in op.results]
        if any(v is None or v.dtype == object or v.size > INLINE_CONSTANT_LIMIT for v in values):
            return False
        rw.replace_op(op, [rw.constant(v, loc=op.loc) for v in values])
        return True


@register_pass
@dataclass
class FoldConstants(Pass):
    """Fold ops computable at compile time (shape arithmetic on static dims, constant math) into constants."""

    name: ClassVar[str] = "fold-constants"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        return apply_patterns(module, [FoldToConstant()], ctx)

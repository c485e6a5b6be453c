"""fuse-residual: the add joining a block's branch back into the residual stream becomes `residual`.

    %h1 = add(%h0, %proj)   ->   %h1 = residual(%h0, %proj)     (both from fused ops, same type)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.ir.core import Module, Operation
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns

STREAM_OPS = ("linear", "attention", "embedding", "residual", "layer_norm")


class AddToResidual(RewritePattern):
    name = "fuse-residual"
    root = "add"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        x, y = op.operands
        if x.type != y.type or x.type != op.result.type or x.type.rank < 2:
            return False
        if any(v.owner is None or v.owner.name not in STREAM_OPS for v in (x, y)):
            return False
        rw.replace_op(op, rw.create("residual", [x, y], {}, op.loc))
        return True


@register_pass
@dataclass
class FuseResidual(Pass):
    """Mark the adds between fused ops (the residual stream) as `residual`, a placement boundary."""

    name: ClassVar[str] = "fuse-residual"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        return apply_patterns(module, [AddToResidual()], ctx)

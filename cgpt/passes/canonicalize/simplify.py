"""simplify: erase ops that do nothing, and compose the ones that cancel.

identity(x) -> x; cast to x's own dtype -> x; reshape/expand/squeeze/unsqueeze to x's own type -> x;
transpose by the identity -> x; transpose(transpose(x, p), q) -> transpose(x, p[q]); reshape(reshape(x)) ->
reshape(x) when the outer shape does not copy dims (no 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.ir.core import Loc, Module, Operation
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns


class EraseNoOp(RewritePattern):
    """An op whose single result is its first operand, type for type, is that operand."""

    name = "erase-no-op"
    root = ("identity", "cast", "reshape", "expand", "squeeze", "unsqueeze")

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        if not op.operands or len(op.results) != 1 or op.result.type != op.operands[0].type:
            return False
        if any(d is None for d in op.result.type.shape):
            return False  # an unknown dim equals nothing for sure
        rw.replace_op(op, [op.operands[0]])
        return True


class ComposeTransposes(RewritePattern):
    """transpose(transpose(x, p), q) is transpose(x, p[q]); the identity permutation is no op."""

    name = "compose-transposes"
    root = "transpose"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        perm = op.attributes.get("perm")
        if perm is None:
            return False
        if list(perm) == list(range(len(perm))):
            rw.replace_op(op, [op.operands[0]])
            return True
        inner = rw.producer(op.operands[0], "transpose")
        if inner is None or inner.attributes.get("perm") is None:
            return False
        p = inner.attributes["perm"]
        composed = tuple(p[i] for i in perm)
        new = rw.create("transpose", [inner.operands[0]], {"perm": composed}, Loc.fuse([inner.loc, op.loc]))
        rw.replace_op(op, new)
        return True


class ComposeReshapes(RewritePattern):
    """reshape(reshape(x)) is one reshape when the outer target copies no dims (0) from its input."""

    name = "compose-reshapes"
    root = "reshape"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        shape = op.attributes.get("shape")
        inner = rw.producer(op.operands[0], "reshape")
        if shape is None or len(op.operands) != 1 or inner is None:
            return False
        if any(d == 0 for d in shape) and not op.attributes.get("allowzero", False):
            return False
        new = rw.create("reshape", [inner.operands[0]], dict(op.attributes), Loc.fuse([inner.loc, op.loc]))
        if new.result.type != op.result.type:
            rw.erase_if_dead(new)
            return False
        rw.replace_op(op, new)
        return True


SIMPLIFY_PATTERNS = (EraseNoOp, ComposeTransposes, ComposeReshapes)


@register_pass
@dataclass
class Simplify(Pass):
    """Erase no-op identity, cast, reshape, expand, squeeze, unsqueeze and transpose; compose chains."""

    name: ClassVar[str] = "simplify"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        return apply_patterns(module, [p() for p in SIMPLIFY_PATTERNS], ctx)

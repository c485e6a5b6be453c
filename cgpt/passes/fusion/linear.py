"""fuse-linear: matmul by a weight (+ bias) (+ gelu) becomes `linear`, also through HF Conv1D's
Reshape-Gemm-Reshape.

    %a = reshape(%x) {shape = [-1, 768]}        %m = matmul(%a, %w)        %b = add(%m, %bias)
    %y = reshape(%b) {shape = [?batch, ?seq, 3072]}                          %z = gelu(%y)
        ->  %z = linear(%x, %w, %bias) {activation = "gelu"}

Four small patterns compose: matmul -> linear; linear + bias; reshape around linear; gelu after linear.
A weight read through transpose (a tied LM head, a Gemm with transB) becomes `transpose_w = true`: no copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.ir.core import Loc, Module, Operation, Value
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.fusion.match import is_parameter, producer, single_use, split_operands
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns


def _weight_operand(v: Value) -> tuple[Value, bool] | None:
    """(the stored 2-D weight, whether it is read transposed) for a matmul's right operand."""
    if is_parameter(v) and v.type.rank == 2:
        return v, False
    t = producer(v, "transpose")
    if t is not None and is_parameter(t.operands[0]) and t.operands[0].type.rank == 2:
        if tuple(t.attributes.get("perm") or (1, 0)) == (1, 0):
            return t.operands[0], True
    return None


def _plain(op: Operation | None) -> bool:
    """A linear that has absorbed nothing after its matmul (so a bias or activation may still follow)."""
    return op is not None and op.name == "linear" and op.attributes.get("activation", "none") == "none"


class MatmulToLinear(RewritePattern):
    name = "fuse-linear.matmul"
    root = "matmul"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        x, w = op.operands
        found = _weight_operand(w)
        if found is None or x.type.rank < 1 or is_parameter(x):
            return False
        weight, transposed = found
        attrs = {"transpose_w": True} if transposed else {}
        locs = [op.loc] + ([w.owner.loc] if transposed else [])
        new = rw.create("linear", [x, weight], attrs, Loc.fuse(locs))
        if new.result.type != op.result.type:
            rw.erase_if_dead(new)
            return False
        rw.replace_op(op, new)
        return True


class AbsorbBias(RewritePattern):
    name = "fuse-linear.bias"
    root = "add"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        found = split_operands(op, lambda v: is_parameter(v) and v.type.rank == 1)
        if found is None:
            return False
        bias, y = found
        lin = producer(y, "linear")
        if not _plain(lin) or len(lin.operands) != 2 or not single_use(y):
            return False
        if bias.type.shape != lin.result.type.shape[-1:] or op.result.type != lin.result.type:
            return False
        new = rw.create("linear", [*lin.operands, bias], dict(lin.attributes), Loc.fuse([lin.loc, op.loc]))
        rw.replace_op(op, new)
        return True


class AbsorbReshapes(RewritePattern):
    """reshape([B, S, N]) of linear(reshape([B*S, K]) of x) is linear(x): the reshapes only flatten batch dims."""

    name = "fuse-linear.reshape"
    root = "reshape"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        lin = producer(op.operands[0], "linear")
        if lin is None or not single_use(op.operands[0]):
            return False
        inner = producer(lin.operands[0], "reshape")
        if inner is None or not single_use(lin.operands[0]):
            return False
        x = inner.operands[0]
        if lin.operands[0].type.rank != 2 or x.type.shape[-1:] != lin.operands[0].type.shape[-1:]:
            return False
        if op.result.type.shape != (*x.type.shape[:-1], lin.result.type.shape[-1]):
            return False
        locs = [inner.loc, lin.loc, op.loc]
        new = rw.create("linear", [x, *lin.operands[1:]], dict(lin.attributes), Loc.fuse(locs))
        if new.result.type != op.result.type:
            rw.erase_if_dead(new)
            return False
        rw.replace_op(op, new)
        return True


class AbsorbGelu(RewritePattern):
    name = "fuse-linear.gelu"
    root = "gelu"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        lin = producer(op.operands[0], "linear")
        if not _plain(lin) or not single_use(op.operands[0]):
            return False
        activation = "gelu_tanh" if op.attributes.get("approximate", "none") == "tanh" else "gelu"
        attrs = {**lin.attributes, "activation": activation}
        rw.replace_op(op, rw.create("linear", list(lin.operands), attrs, Loc.fuse([lin.loc, op.loc])))
        return True


LINEAR_PATTERNS = (MatmulToLinear, AbsorbBias, AbsorbReshapes, AbsorbGelu)


@register_pass
@dataclass
class FuseLinear(Pass):
    """Fuse matmul by a weight, its bias add, the Conv1D reshapes around it and a following gelu into `linear`."""

    name: ClassVar[str] = "fuse-linear"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        return apply_patterns(module, [p() for p in LINEAR_PATTERNS], ctx)

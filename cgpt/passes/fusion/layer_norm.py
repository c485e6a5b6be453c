"""fuse-layer-norm: LayerNormalization, and its 9-op decomposition, become `layer_norm`.

    %m = reduce_mean(%x) {axes = [-1]}          %d = sub(%x, %m)           %p = pow(%d, 2.0)
    %v = reduce_mean(%p) {axes = [-1]}          %e = add(%v, 1e-05)        %s = sqrt(%e)
    %n = div(%d, %s)                            %g = mul(%n, %gamma)       %y = add(%g, %beta)
        ->  %y = layer_norm(%x, %gamma, %beta) {epsilon = 1e-05}

Only when it really is a layer norm: both means over the last axis only (keepdims), the power exactly 2, epsilon a
non-negative scalar, gamma and beta parameters shaped [D].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.ir.core import Loc, Module, Operation, Value
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.fusion.match import is_parameter, producer, scalar, split_operands
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns


def _last_axis_mean(op: Operation | None, rank: int) -> bool:
    if op is None or op.name != "reduce_mean" or len(op.operands) != 1:
        return False
    axes = op.attributes.get("axes")
    return axes is not None and len(axes) == 1 and axes[0] in (-1, rank - 1) and op.attributes.get("keepdims", True)


class FuseLayerNormalization(RewritePattern):
    """ONNX LayerNormalization over the last axis."""

    name = "fuse-layer-norm.onnx"
    root = "layer_normalization"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        x = op.operands[0]
        axis = op.attributes.get("axis", -1)
        if axis not in (-1, x.type.rank - 1) or len(op.results) != 1:
            return False
        if any(v.type.shape != x.type.shape[-1:] for v in op.operands[1:]):
            return False  # a scale or bias that only broadcasts to [D] is not layer_norm's gamma/beta
        eps = float(op.attributes.get("epsilon", 1e-5))
        new = rw.create("layer_norm", list(op.operands), {"epsilon": eps}, op.loc)
        rw.replace_op(op, new)
        return True


class FuseDecomposedLayerNorm(RewritePattern):
    """The mean/variance arithmetic a LayerNorm is written as at opset 14 and in hand-written modules."""

    name = "fuse-layer-norm.decomposed"
    root = "add"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        found = split_operands(op, is_parameter)
        if found is None:
            return False
        beta, scaled = found
        mul = producer(scaled, "mul")
        if mul is None:
            return False
        found = split_operands(mul, is_parameter)
        if found is None:
            return False
        gamma, normed = found
        div = producer(normed, "div")
        if div is None:
            return False
        centered, std = div.operands
        sub = producer(centered, "sub")
        sqrt = producer(std, "sqrt")
        if sub is None or sqrt is None:
            return False
        x, mean = sub.operands
        rank = x.type.rank
        mean_op = producer(mean, "reduce_mean")
        if not _last_axis_mean(mean_op, rank) or mean_op.operands[0] is not x:
            return False
        var_eps = producer(sqrt.operands[0], "add")
        if var_eps is None:
            return False
        found = split_operands(var_eps, lambda v: scalar(rw, v) is not None)
        if found is None:
            return False
        eps_value, var = found
        eps = scalar(rw, eps_value)
        var_op = producer(var, "reduce_mean")
        if eps is None or eps < 0 or not _last_axis_mean(var_op, rank):
            return False
        pow_op = producer(var_op.operands[0], "pow")
        if pow_op is None or scalar(rw, pow_op.operands[1]) != 2.0 or not _same_centering(pow_op.operands[0], sub):
            return False
        d = x.type.shape[-1]
        if gamma.type.shape != (d,) or beta.type.shape != (d,) or op.result.type != x.type:
            return False
        chain = [mean_op, sub, pow_op, var_op, var_eps, sqrt, div, mul, op]
        new = rw.create("layer_norm", [x, gamma, beta], {"epsilon": eps}, Loc.fuse(o.loc for o in chain))
        rw.replace_op(op, new)
        return True


def _same_centering(v: Value, sub: Operation) -> bool:
    """`v` is the centred input: the same sub, or an identical sub(x, mean) not yet merged by CSE."""
    other = producer(v, "sub")
    return other is sub or (other is not None and other.operands == sub.operands)


@register_pass
@dataclass
class FuseLayerNorm(Pass):
    """Fuse LayerNormalization and the decomposed mean/variance form into `layer_norm`."""

    name: ClassVar[str] = "fuse-layer-norm"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        return apply_patterns(module, [FuseLayerNormalization(), FuseDecomposedLayerNorm()], ctx)

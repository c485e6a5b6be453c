"""fuse-gelu: any elementwise subgraph of one input that computes GELU becomes `gelu`.

    %a = div(%x, 1.4142135)   %b = erf(%a)   %c = add(%b, 1.0)   %d = mul(%x, %c)   %y = mul(%d, 0.5)
        ->  %y = gelu(%x) {approximate = "none"}

Exporters write the erf chain in several operand orders, and the tanh approximation in more. Instead of listing
them, the pattern takes the elementwise cone above an op, and for each candidate input checks what the cone
computes by evaluating it on sample points against exact and tanh GELU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cgpt.ir.core import Loc, Module, Operation, Value
from cgpt.ir.ops.fused import gelu
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.fusion.match import scalar
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns
from cgpt.passes.slice_eval import SliceEvaluator

ELEMENTWISE = ("add", "sub", "mul", "div", "pow", "sqrt", "erf", "tanh", "neg", "exp", "reciprocal", "sigmoid")
TRANSCENDENTAL = ("erf", "tanh")
MAX_CONE = 16
# The two GELU forms differ by up to 2e-4 near |x| = 2; f32 evaluation tells them apart, f16 picks the closer.
TOLERANCE = {"f32": 2e-5, "f16": 1e-2, "bf16": 5e-2}
SAMPLES = np.linspace(-6.0, 6.0, 241, dtype=np.float32)


def _cone(root: Operation) -> list[Operation]:
    """Elementwise ops the root depends on through elementwise ops (closest first, bounded)."""
    cone, frontier = [root], [root]
    while frontier and len(cone) < MAX_CONE:
        op = frontier.pop(0)
        for v in op.operands:
            p = v.owner
            if p is not None and p.name in ELEMENTWISE and p not in cone:
                cone.append(p)
                frontier.append(p)
    return cone


def _slice_from(leaf: Value, root: Operation, cone: list[Operation], rw: PatternRewriter) -> list[Operation] | None:
    """The cone ops between `leaf` and `root`, if they form a closed single-input subgraph."""
    inside: list[Operation] = []
    reach = {leaf}
    for op in reversed(cone):  # producers before consumers
        if any(v in reach for v in op.operands):
            inside.append(op)
            reach.update(op.results)
    if root not in inside:
        return None
    members = set(inside)
    for op in inside:
        for v in op.operands:
            if v is not leaf and v.owner not in members and scalar(rw, v) is None:
                return None  # a second input
        if op is not root and any(u not in members for r in op.results for u, _ in r.uses):
            return None  # an intermediate is used outside
    return inside


class FuseGeluChain(RewritePattern):
    name = "fuse-gelu.chain"
    root = ELEMENTWISE

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        if op.result.type.dtype not in ("f32", "f16", "bf16"):
            return False
        cone = _cone(op)
        if not any(o.name in TRANSCENDENTAL for o in cone):
            return False
        # The input may be produced inside the cone too (an elementwise bias add right before the GELU).
        leaves = sorted((v for o in cone for v in o.operands if scalar(rw, v) is None), key=lambda v: v.owner in cone)
        for leaf in dict.fromkeys(leaves):
            if leaf.type != op.result.type:
                continue
            chain = _slice_from(leaf, op, cone, rw)
            if chain is None or not any(o.name in TRANSCENDENTAL for o in chain):
                continue
            out = SliceEvaluator({}, feeds={leaf: SAMPLES.astype(leaf.type.np_dtype)}).try_value(op.result)
            if out is None or out.shape != SAMPLES.shape:
                continue
            errors = {m: float(np.max(np.abs(out.astype(np.float32) - gelu(SAMPLES, m)))) for m in ("none", "tanh")}
            mode = min(errors, key=errors.__getitem__)
            if errors[mode] > TOLERANCE[leaf.type.dtype]:
                continue
            rw.replace_op(op, rw.create("gelu", [leaf], {"approximate": mode}, Loc.fuse(o.loc for o in chain)))
            return True
        return False


@register_pass
@dataclass
class FuseGelu(Pass):
    """Fuse any elementwise erf or tanh subgraph that computes GELU (exact or tanh) into `gelu`."""

    name: ClassVar[str] = "fuse-gelu"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        return apply_patterns(module, [FuseGeluChain()], ctx)

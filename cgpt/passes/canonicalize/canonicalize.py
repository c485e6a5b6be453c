"""canonicalize: every canonicalization pattern at once to a fixpoint, then CSE and DCE, until nothing changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.ir.core import Module
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.canonicalize.dedupe_weights import DedupeWeights
from cgpt.passes.canonicalize.fold_constants import FoldToConstant
from cgpt.passes.canonicalize.fold_shapes import OperandToAttribute
from cgpt.passes.canonicalize.gemm import GemmToMatmul
from cgpt.passes.canonicalize.simplify import SIMPLIFY_PATTERNS
from cgpt.passes.cse import CommonSubexpressionElimination
from cgpt.passes.dce import DeadCodeElimination
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import RewritePattern, apply_patterns

CANONICALIZE_PATTERNS: tuple[type[RewritePattern], ...] = (
    FoldToConstant,
    OperandToAttribute,
    GemmToMatmul,
    *SIMPLIFY_PATTERNS,
)


@register_pass
@dataclass
class Canonicalize(Pass):
    """Merge duplicated weights; fold constants and shapes, erase no-ops, normalise Gemm, CSE, DCE, to a fixpoint."""

    name: ClassVar[str] = "canonicalize"
    max_rounds: int = 10

    def apply(self, module: Module, ctx: PassContext) -> bool:
        changed = DedupeWeights().apply(module, ctx)
        for _ in range(self.max_rounds):
            round_changed = apply_patterns(module, [p() for p in CANONICALIZE_PATTERNS], ctx)
            round_changed |= CommonSubexpressionElimination().apply(module, ctx)
            round_changed |= DeadCodeElimination().apply(module, ctx)
            changed |= round_changed
            if not round_changed:
                break
        return changed

"""fuse: all fusion passes in dependency order, then canonicalize what they left behind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.ir.core import Module
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.canonicalize.canonicalize import Canonicalize
from cgpt.passes.pipeline import make_pass
from cgpt.passes.registry import register_pass

# gelu before linear (linear absorbs it); attention before linear (its merged output is the flattened input
# of the projection's Reshape-Gemm-Reshape, which fuse-linear then collapses).
FUSION_ORDER = ("fuse-layer-norm", "fuse-gelu", "fuse-attention", "fuse-linear", "fuse-embedding", "fuse-residual")


@register_pass
@dataclass
class Fuse(Pass):
    """Run fuse-layer-norm, fuse-gelu, fuse-attention, fuse-linear, fuse-embedding, fuse-residual, then canonicalize."""

    name: ClassVar[str] = "fuse"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        changed = False
        for name in FUSION_ORDER:
            changed |= bool(make_pass(name).apply(module, ctx))
        changed |= Canonicalize().apply(module, ctx)
        return changed

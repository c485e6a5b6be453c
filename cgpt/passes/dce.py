"""dce: erase pure ops whose results nobody uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.ir.core import Module
from cgpt.ir.registry import lookup_op
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass


@register_pass
@dataclass
class DeadCodeElimination(Pass):
    """Erase pure ops whose results have no uses (walking backwards, so whole dead chains go in one pass)."""

    name: ClassVar[str] = "dce"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        changed = False
        for fn in module.functions:
            op = fn.last
            while op is not None:
                prev = op.prev
                opdef = lookup_op(op.name)
                if (opdef is None or opdef.pure) and not any(r.uses for r in op.results):
                    fn.erase(op)
                    changed = True
                op = prev
        return changed

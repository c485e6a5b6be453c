"""fold-shapes: shape operands known at compile time (even symbolically) become attributes.

    %s = concat(%b, %seq, %c12, %c64)           // [?batch, ?seq, 12, 64], folded from shape(%x)
    %y = reshape(%x, %s)            ->   %y = reshape(%x) {shape = [?batch, ?seq, 12, 64]}

Every op that declares an operand and an attribute of the same name (reshape/expand `shape`, squeeze/unsqueeze
and reductions `axes`, split `split`, slice `starts`/`ends`/`axes`/`steps`) gets it; the now-dead Shape/Gather/
Concat chains are erased by the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from cgpt.ir.core import Module, Operation
from cgpt.ir.registry import lookup_op
from cgpt.ir.types import Sym
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns


def _as_attr(value: np.ndarray, kind: str) -> Any:
    if kind == "int":
        if value.size != 1 or value.dtype.kind not in "iu":
            return None
        return int(value.reshape(-1)[0])
    if kind not in ("ints", "dims"):
        return None
    items = []
    for x in value.reshape(-1).tolist():
        if isinstance(x, str):
            if kind != "dims":
                return None
            items.append(Sym(x))
        elif isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
            return None
        else:
            items.append(int(x))
    return tuple(items)


class OperandToAttribute(RewritePattern):
    """Move known trailing operands into the attributes of the same name."""

    name = "operand-to-attribute"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        opdef = lookup_op(op.name)
        if opdef is None or len(op.operands) < 2:
            return False
        names = [n.rstrip("?*") for n in opdef.operands]
        first = next((i for i, n in enumerate(names) if n in opdef.attributes and i < len(op.operands)), None)
        if first is None:
            return False
        moved: dict[str, Any] = {}
        for i in range(first, len(op.operands)):
            spec = opdef.attributes.get(names[i]) if i < len(names) else None
            value = rw.value_of(op.operands[i])
            if spec is None or value is None or not isinstance(spec.kind, str):
                return False
            attr = _as_attr(value, spec.kind)
            if attr is None:
                return False
            moved[names[i]] = attr
        new = rw.create(op.name, op.operands[:first], {**op.attributes, **moved}, op.loc)
        if [r.type for r in new.results] != [r.type for r in op.results]:
            rw.erase_if_dead(new)
            return False
        rw.replace_op(op, new)
        return True


@register_pass
@dataclass
class FoldShapes(Pass):
    """Turn shape operands known at compile time (static or symbolic) into attributes."""

    name: ClassVar[str] = "fold-shapes"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        return apply_patterns(module, [OperandToAttribute()], ctx)

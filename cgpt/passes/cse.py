"""cse: merge pure ops that compute the same thing from the same operands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from cgpt.ir.attributes import attr_key
from cgpt.ir.core import Module, Operation
from cgpt.ir.registry import lookup_op
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass


def op_key(op: Operation) -> tuple[Any, ...]:
    """Two pure ops with equal keys compute the same values."""
    attrs = tuple((k, attr_key(op.attributes[k])) for k in sorted(op.attributes))
    return (op.name, tuple(id(v) for v in op.operands), attrs, tuple(r.type for r in op.results))


@register_pass
@dataclass
class CommonSubexpressionElimination(Pass):
    """Replace a pure op by an earlier identical one (same name, operands, attributes and result types).

    The surviving op keeps the first location; the duplicate's location is merged into it.
    """

    name: ClassVar[str] = "cse"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        changed = False
        for fn in module.functions:
            seen: dict[tuple[Any, ...], Operation] = {}
            for op in fn.ops:
                opdef = lookup_op(op.name)
                if opdef is None or not opdef.pure:
                    continue
                key = op_key(op)
                first = seen.get(key)
                if first is None:
                    seen[key] = op
                    continue
                for old, new in zip(op.results, first.results, strict=True):
                    old.replace_all_uses_with(new)
                fn.erase(op)
                changed = True
        return changed

"""mesh-route: make every producer-to-consumer transfer between regions explicit, routed XY.

    %t = mesh.transfer(%y) {src = #mesh.rect<...>, dst = #mesh.rect<...>, bytes = 24576, hops = 18, color = 1}

Each transfer gets dimension-ordered XY streams (cgpt/backends/mesh/routing.py), its hop count and a routing color;
the per-link load and colors per PE are checked against the target. Streaming mode has no transfers: all ops share
the whole mesh and activations stay where they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.backends.mesh.program import bytes_per_sample, module_mode, module_target, transfer_routes
from cgpt.ir.core import Module, Operation
from cgpt.ir.ops.mesh import placed_ops
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass


@register_pass
@dataclass
class MeshRoute(Pass):
    """Insert a routed mesh.transfer for every value that crosses from one region to another."""

    name: ClassVar[str] = "mesh-route"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        target = module_target(module)
        if module_mode(module) == "streaming":
            return False
        changed = False
        for fn in module.functions:
            for op in placed_ops(list(fn.ops)):
                for i, v in enumerate(op.operands):
                    src = v.owner
                    if src is None or src.attributes.get("region") in (None, op.attributes["region"]):
                        continue
                    if src.name == "mesh.transfer":
                        continue
                    t = Operation("mesh.transfer", [v], [v.type], {
                        "src": src.attributes["region"], "dst": op.attributes["region"],
                        "bytes": int(bytes_per_sample(src)), "hops": 0, "color": 0,
                    }, op.loc)
                    fn.insert_before(op, t)
                    op.set_operand(i, t.result)
                    changed = True
            result = transfer_routes(fn, target)
            result.check_colors()
            transfers = [op for op in fn.ops if op.name == "mesh.transfer"]
            for op, route in zip(transfers, result.routes, strict=True):
                op.attributes["hops"] = int(route.hops)
                op.attributes["color"] = int(route.color)
        return changed



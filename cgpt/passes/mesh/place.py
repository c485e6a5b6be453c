"""mesh-place: give every mesh op a region of PEs and a tiling.

Pipelined mode solves the kernel sizing and placement problem of the ISPD 2020 contest (cgpt/backends/mesh/
placement.py): one rectangle per op (a tied embedding shares its LM head's), sized to minimise the slowest stage,
then placed to shorten traffic-weighted producer-consumer distance. Streaming mode runs ops one after another on
the whole mesh. Each op's tiling is the best one the cost model finds inside its rectangle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.backends.mesh.kernels import KernelSpec, best_tiling
from cgpt.backends.mesh.placement import place_kernels
from cgpt.backends.mesh.program import (
    group_name,
    kernel_spec,
    layers_of,
    module_mode,
    module_target,
    placement_problem,
    region_groups,
    tied_tables,
)
from cgpt.backends.mesh.target import Target
from cgpt.ir.core import Module, Operation
from cgpt.ir.ops.mesh import MeshRect, MeshTiling
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass


@register_pass
@dataclass
class MeshPlace(Pass):
    """Size and place one rectangle per mesh op (pipelined) or give each the whole mesh (streaming)."""

    name: ClassVar[str] = "mesh-place"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        target, mode, tied = module_target(module), module_mode(module), tied_tables(module)
        for fn in module.functions:
            groups = region_groups(fn, tied)
            specs = {op: kernel_spec(op, target, mode, tied) for g in groups for op in g}
            if mode == "streaming":
                rects = {group_name(i): MeshRect(0, 0, target.width, target.height) for i in range(len(groups))}
            else:
                rects = _place(groups, specs, target)
            members = {op for g in groups for op in g}
            layers = layers_of([op for op in fn.ops if op in members])
            for i, g in enumerate(groups):
                r = rects[group_name(i)]
                for op in g:
                    tw, th = best_tiling(specs[op], r.w, r.h, target.width, target.height)
                    op.attributes["region"] = r
                    op.attributes["tiling"] = MeshTiling(tw, th)
                    op.attributes["layer"] = layers[op]
        return True


def _place(groups: list[list[Operation]], specs: dict[Operation, KernelSpec], target: Target) -> dict[str, MeshRect]:
    kernels, edges = placement_problem(groups, specs, target)
    placement = place_kernels(kernels, edges, width=target.width, height=target.height)
    return {name: MeshRect(r.x, r.y, r.w, r.h) for name, r in placement.rects.items()}

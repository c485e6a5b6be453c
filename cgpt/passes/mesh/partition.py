"""mesh-partition: bind the module to a target and execution mode, and lower fused ops to mesh ops.

    cgpt-opt fused.cgir -p 'mesh-partition{preset=wse2,mode=pipelined,dtype=f16}'

Every op must have a tiling whose per-PE share fits the target's SRAM; in pipelined mode all weights must fit
on the wafer at once. Otherwise it fails with the memory error of mesh-memory (what does not fit, by how much,
what would fix it). Ops left unfused cannot be placed and are listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

import cgpt.backends.mesh.checks  # noqa: F401  (placed programs verify SRAM and colors from here on)
from cgpt.backends.mesh.kernels import min_pes
from cgpt.backends.mesh.program import MODES, kernel_spec, module_target, target_attr, tied_tables
from cgpt.ir.core import Module, Operation
from cgpt.ir.diagnostics import CompileError
from cgpt.ir.ops.mesh import MESH_OF_FUSED
from cgpt.ir.types import FLOAT_DTYPES
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.mesh.memory import does_not_fit
from cgpt.passes.registry import register_pass

SOURCE_OPS = ("weight", "constant")


def convert_float_dtype(module: Module, dtype: str) -> None:
    """Store every float tensor of the module (weights, constants, activations) as `dtype`."""
    for fn in module.functions:
        for v in fn.args:
            if v.type.dtype in FLOAT_DTYPES:
                v.type = v.type.with_dtype(dtype)
        for op in fn.ops:
            if op.name == "weight" and op.result.type.dtype in FLOAT_DTYPES and module.weights is not None:
                module.weights.cast(op.attributes["name"], dtype)
            if op.name == "constant" and op.result.type.dtype in FLOAT_DTYPES:
                op.attributes["value"] = op.attributes["value"].astype(op.result.type.with_dtype(dtype).np_dtype)
            if op.name == "cast" and op.attributes.get("to") in FLOAT_DTYPES:
                op.attributes["to"] = dtype
            for r in op.results:
                if r.type.dtype in FLOAT_DTYPES:
                    r.type = r.type.with_dtype(dtype)


@register_pass
@dataclass
class MeshPartition(Pass):
    """Lower fused ops to mesh ops for a target (preset or TOML) and mode; check each op has a tiling that fits."""

    name: ClassVar[str] = "mesh-partition"
    preset: str = ""
    config: str = ""
    mode: str = "pipelined"
    dtype: str = ""

    def apply(self, module: Module, ctx: PassContext) -> bool:
        if self.mode not in MODES:
            raise CompileError(f"unknown mode '{self.mode}'; choose one of: {', '.join(MODES)}")
        if self.dtype and self.dtype not in FLOAT_DTYPES:
            raise CompileError(f"unknown dtype '{self.dtype}'; choose one of: f32, f16, bf16")
        target = module_target(module, self.preset, self.config)
        module.attributes["target"] = target_attr(target)
        module.attributes["mode"] = self.mode
        if self.dtype:
            convert_float_dtype(module, self.dtype)
        module.attributes["dtype"] = self.dtype or _float_dtype(module)
        tied = tied_tables(module)
        for fn in module.functions:
            unfused = [op for op in fn.ops if op.name not in SOURCE_OPS and op.name not in MESH_OF_FUSED
                       and not op.name.startswith("mesh.")]
            if unfused:
                names = ", ".join(f"'{op.name}' at loc({op.loc})" for op in unfused[:5])
                raise CompileError(f"{len(unfused)} op(s) were not fused and cannot be placed on the mesh: {names}"
                                   " (run canonicalize,fuse first; a model outside the GPT family may need new"
                                   " fusion patterns)")
            for op in list(fn.ops):
                if op.name in MESH_OF_FUSED:
                    _lower(fn, op)
            _check_fits(list(fn.ops), target, self.mode, tied)
        return True


def _float_dtype(module: Module) -> str:
    for op in module.ops():
        for r in op.results:
            if r.type.dtype in FLOAT_DTYPES:
                return r.type.dtype
    return "f32"


def _lower(fn, op: Operation) -> None:  # type: ignore[no-untyped-def]
    new = Operation(MESH_OF_FUSED[op.name], list(op.operands), [r.type for r in op.results], dict(op.attributes),
                    op.loc)
    fn.insert_before(op, new)
    for old, r in zip(op.results, new.results, strict=True):
        r.name_hint = old.name_hint
        old.replace_all_uses_with(r)
    fn.erase(op)


def _check_fits(ops: list[Operation], target, mode: str, tied: frozenset[str]) -> None:  # type: ignore[no-untyped-def]
    need = 0
    for op in ops:
        if not op.name.startswith("mesh.") or op.name == "mesh.transfer":
            continue
        spec = kernel_spec(op, target, mode, tied)
        pes = min_pes(spec, target.width, target.height)
        if pes == 0:
            raise does_not_fit(op, target, mode, spec, None)
        need += pes
    if mode == "pipelined" and need > target.pes:
        weight_bytes = sum(kernel_spec(op, target, mode, tied).weight_bytes for op in ops
                           if op.name.startswith("mesh.") and op.name != "mesh.transfer")
        raise does_not_fit(None, target, mode, None, (need, int(np.ceil(weight_bytes))))

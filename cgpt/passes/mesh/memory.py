"""mesh-memory: the per-PE SRAM plan. Every placed op's share of weights, activations and double buffers must
fit the target's usable SRAM; otherwise one error says which op, how many bytes per PE it needs against how many
the target has, and what would fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cgpt.backends.mesh.kernels import KernelSpec, sram_per_pe
from cgpt.backends.mesh.program import kernel_spec, module_mode, module_target, tied_tables
from cgpt.backends.mesh.target import Target
from cgpt.ir.core import Module, Operation
from cgpt.ir.diagnostics import CompileError
from cgpt.ir.ops.mesh import placed_ops
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass

KIB = 1024


def fixes(target: Target, mode: str, dtype: str) -> str:
    options = []
    if mode == "pipelined":
        options.append("--mode streaming (weights stream from off-wafer memory)")
    options.append("a larger target (e.g. --preset wse3)")
    if dtype == "f32":
        options.append("--dtype f16")
    options.append("a shorter sequence (--shape input_ids=1xN)")
    return "; ".join(options)


def does_not_fit(op: Operation | None, target: Target, mode: str, spec: KernelSpec | None,
                 totals: tuple[int, int] | None, need_bytes: int | None = None) -> CompileError:
    """The memory error: what does not fit, by how much, and what would fix it."""
    usable = target.sram_usable_bytes_per_pe
    dtype = {4: "f32", 2: "f16"}.get(spec.itemsize if spec else 4, "f16")
    if op is None and totals is not None:
        pes, weight_bytes = totals
        return CompileError(
            f"does not fit on {target.name} in {mode} mode: the ops need at least {pes:,} PEs of "
            f"{usable:,} usable bytes each ({weight_bytes / 2**30:.2f} GiB of weights), the mesh has "
            f"{target.pes:,} PEs ({target.pes * usable / 2**30:.2f} GiB), short by {pes - target.pes:,} PEs; "
            f"fix: {fixes(target, mode, dtype)}")
    assert op is not None
    need = f"{need_bytes:,} bytes per PE" if need_bytes is not None else "more than its SRAM on every tiling"
    return CompileError(
        f"'{op.name}' needs {need} but {target.name} has {usable:,} usable bytes per PE"
        + (f" (over by {need_bytes - usable:,})" if need_bytes is not None else "")
        + f"; fix: {fixes(target, mode, dtype)}", where=f"loc({op.loc})")


@register_pass
@dataclass
class MeshMemory(Pass):
    """Check every placed op's per-PE SRAM (weights, activations, double buffers) against the target."""

    name: ClassVar[str] = "mesh-memory"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        target, mode, tied = module_target(module), module_mode(module), tied_tables(module)
        for fn in module.functions:
            for op in placed_ops(list(fn.ops)):
                tiling = op.attributes.get("tiling")
                if tiling is None:
                    raise CompileError(f"'{op.name}' has a region but no tiling", where=f"loc({op.loc})")
                spec = kernel_spec(op, target, mode, tied)
                need = sram_per_pe(spec, tiling.w, tiling.h)
                if need > target.sram_usable_bytes_per_pe:
                    raise does_not_fit(op, target, mode, spec, None, need)
        return False

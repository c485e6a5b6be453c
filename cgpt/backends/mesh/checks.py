"""Verifier checks of placed programs that need the mesh cost model: per-PE SRAM of every op's tiling, and routing
colors per PE. Importing this module registers them, so `cgpt-opt placed.cgir` re-verifies a hand-edited placement."""

from __future__ import annotations

from cgpt.backends.mesh.kernels import sram_per_pe
from cgpt.backends.mesh.program import kernel_spec, module_mode, module_target, tied_tables, transfer_routes
from cgpt.ir.core import Function
from cgpt.ir.diagnostics import CgptError, VerifyError
from cgpt.ir.ops.mesh import MeshTarget, placed_ops
from cgpt.ir.registry import register_function_check


@register_function_check
def check_sram_and_colors(fn: Function) -> None:
    module = fn.parent
    if module is None or not isinstance(module.attributes.get("target"), MeshTarget):
        return
    target, mode, tied = module_target(module), module_mode(module), tied_tables(module)
    usable = target.sram_usable_bytes_per_pe
    for op in placed_ops(list(fn.ops)):
        tiling = op.attributes.get("tiling")
        if tiling is None:
            continue
        try:
            need = sram_per_pe(kernel_spec(op, target, mode, tied), tiling.w, tiling.h)
        except CgptError as err:
            raise VerifyError(err.message) from None
        if need > usable:
            raise VerifyError(
                f"'{op.name}' with tiling {tiling.w}x{tiling.h} needs {need:,} bytes of SRAM per PE; "
                f"{target.name} has {usable:,} usable (over by {need - usable:,})", where=f"loc({op.loc})")
    if any(op.name == "mesh.transfer" for op in fn.ops):
        try:
            transfer_routes(fn, target).check_colors()
        except CgptError as err:
            raise VerifyError(err.message) from None

"""A module on disk: `NAME.cgir` text plus its weights in a safetensors sidecar.

The sidecar of `dir/NAME.cgir` is `dir/NAME.safetensors`, or `dir/weights.safetensors` (a cgpt-compile output
directory). The text never names it, so two dumps of the same module are identical wherever they are written.
"""

from __future__ import annotations

import os
from pathlib import Path

from cgpt.ir.core import Module
from cgpt.ir.diagnostics import CgptError
from cgpt.ir.files import write_text_atomic
from cgpt.ir.parser import parse_module
from cgpt.ir.printer import print_module
from cgpt.ir.weights import WeightStore


def sidecar_path(cgir: Path) -> Path | None:
    """The weights file that belongs to `cgir`, if there is one."""
    for candidate in (cgir.with_suffix(".safetensors"), cgir.parent / "weights.safetensors"):
        if candidate.is_file():
            return candidate
    return None


def used_weight_names(module: Module) -> list[str]:
    return sorted({op.attributes["name"] for op in module.ops() if op.name == "weight"})


def read_cgir(path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None) -> Module:
    """Parse a .cgir file (or stdin for '-') and attach its weights sidecar if it has one."""
    p = Path(path)
    if str(path) == "-":
        import sys

        return parse_module(sys.stdin.read(), "<stdin>", WeightStore.open(weights) if weights else None)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CgptError(f"cannot read IR: {err.strerror if isinstance(err, OSError) else err}", where=str(p)) from None
    side = Path(weights) if weights else sidecar_path(p)
    return parse_module(text, str(p), WeightStore.open(side) if side else None)


def write_cgir(
    module: Module, path: str | os.PathLike[str], weights_path: str | os.PathLike[str] | None = None
) -> None:
    """Write the text and (when the module uses weights) the sidecar, each atomically."""
    p = Path(path)
    names = used_weight_names(module)
    if names:
        if module.weights is None:
            raise CgptError("the module uses weights but has no weight store attached", where=str(p))
        missing = [n for n in names if n not in module.weights]
        if missing:
            raise CgptError(f"weights not in the store: {', '.join(missing[:5])}", where=str(p))
        module.weights.save(weights_path or p.with_suffix(".safetensors"), names)
    write_text_atomic(p, print_module(module))

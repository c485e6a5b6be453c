"""Load a model from whatever a user hands us: an .onnx file, a .cgir file (with its sidecar) or a
cgpt-compile output directory."""

from __future__ import annotations

import os
from pathlib import Path

from cgpt.ir.core import Module
from cgpt.ir.diagnostics import CgptError
from cgpt.ir.module_files import read_cgir

MODEL_KINDS = ".onnx file, .cgir file, or a cgpt-compile output directory"


def load_model(path: str | os.PathLike[str], shapes: dict[str, tuple[int, ...]] | None = None) -> Module:
    """The module in `path`; `shapes` specialises an ONNX model's inputs (ignored for IR, which is already typed)."""
    p = Path(path)
    if str(path) == "-":
        return read_cgir("-")
    if p.is_dir():
        cgir = p / "model.cgir"
        if not cgir.is_file():
            raise CgptError(f"directory has no model.cgir (expected a {MODEL_KINDS})", where=str(p))
        return read_cgir(cgir)
    if not p.exists():
        raise CgptError("no such file", where=str(p))
    if p.suffix == ".onnx":
        from cgpt.frontend.onnx_import import import_onnx

        return import_onnx(p, shapes=shapes)
    if p.suffix == ".cgir":
        return read_cgir(p)
    raise CgptError(f"unknown model file extension '{p.suffix}' (expected a {MODEL_KINDS})", where=str(p))

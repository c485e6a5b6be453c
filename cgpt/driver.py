"""The compile driver behind cgpt-compile and the Python API:

    model = cgpt.compile("model.onnx", target="mesh", preset="wse2")
    model.report["stage_cycles_max"]
    logits = model.run({"input_ids": ids}, backend="reference")["logits"]
    model.save("out/")

Import, canonicalize and fuse, then (for the mesh) partition, place, route and plan memory; every stage is a pass
of one pipeline, so every option of cgpt-opt (dumps, timing, verification) applies.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from cgpt.ir.core import Module
from cgpt.ir.diagnostics import CgptError, CompileError
from cgpt.ir.files import make_temp_dir, write_text_atomic
from cgpt.ir.module_files import write_cgir
from cgpt.passes.manager import PassManager, PassManagerOptions
from cgpt.passes.pipeline import parse_pipeline

TARGETS = ("mesh", "reference")
DEFAULT_SHAPE = (1, 128)  # batch, sequence: what a symbolic input_ids is specialised to when no --shape is given
OUTPUT_MARKER = ".cgpt-output"  # marks a directory cgpt made, which a new compile may overwrite


def default_dtype(preset: str | None) -> str:
    """f16 on the wafer presets, as on the hardware; f32 on the small test meshes and user targets."""
    return "f16" if preset is not None and preset.startswith("wse") else "f32"


def pipeline_length(pipeline: str) -> int:
    return len(parse_pipeline(pipeline))


def mesh_pipeline(preset: str | None, config: str | None, mode: str, dtype: str) -> str:
    opts = [f"mode={mode}", f"dtype={dtype}"]
    if config:
        opts.insert(0, f"config={config}")
    elif preset:
        opts.insert(0, f"preset={preset}")
    return f"canonicalize,fuse,mesh-partition{{{','.join(opts)}}},mesh-place,mesh-route,mesh-memory"


@dataclass
class CompiledModel:
    """A compiled program: the module, its report (mesh target) and how it was made."""

    module: Module
    target: str
    report: dict[str, Any] | None = None
    source: str = ""
    ops_before: int = 0
    ops_after: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def run(self, inputs: dict[str, np.ndarray], backend: str = "reference") -> dict[str, np.ndarray]:
        """Run the program on the reference backend or the mesh simulator ("sim")."""
        if backend == "reference":
            from cgpt.backends.reference.interpreter import run_module

            return run_module(self.module, inputs)
        if backend == "sim":
            from cgpt.backends.mesh.simulator import simulate

            return simulate(self.module, inputs).outputs
        raise CgptError(f"unknown backend '{backend}'; choose reference or sim")

    def save(self, outdir: str | os.PathLike[str], force: bool = False) -> Path:
        return write_outputs(self, outdir, force)


def count_ops(module: Module) -> int:
    return sum(1 for op in module.ops() if op.name not in ("weight", "constant"))


def compile_model(
    path: str | os.PathLike[str],
    target: str = "mesh",
    preset: str | None = "wse2",
    target_config: str | None = None,
    mode: str = "pipelined",
    dtype: str | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
    pipeline: str | None = None,
    options: PassManagerOptions | None = None,
    out: IO[str] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> CompiledModel:
    """Compile an ONNX model (or IR) for the mesh or the reference backend."""
    from cgpt.frontend.load import load_model

    if target not in TARGETS:
        raise CompileError(f"unknown target '{target}'; choose one of: {', '.join(TARGETS)}")
    stages: dict[str, float] = {}
    stage = on_stage or (lambda _name: None)
    start = time.perf_counter()
    stage("import")
    module = load_model(path, shapes=_with_default_shape(path, shapes))
    stages["import"] = time.perf_counter() - start
    before = count_ops(module)
    if pipeline is None:
        if target == "mesh":
            pipeline = mesh_pipeline(None if target_config else preset, target_config, mode,
                                     dtype or default_dtype(None if target_config else preset))
        else:
            pipeline = "canonicalize,fuse"
    pm = PassManager(parse_pipeline(pipeline), options or PassManagerOptions(), out=out or sys.stdout, on_pass=stage)
    start = time.perf_counter()
    pm.run(module)
    stages["passes"] = time.perf_counter() - start
    compiled = CompiledModel(module, target, source=str(path), ops_before=before, ops_after=count_ops(module),
                             stage_seconds=stages)
    if target == "mesh" and "target" in module.attributes:
        from cgpt.backends.mesh.report import build_report

        per_pass: dict[str, float] = {}
        for t in pm.timings:
            per_pass[t.name] = per_pass.get(t.name, 0.0) + t.seconds
        stage("report")
        compiled.report = build_report(module, stages["import"] + stages["passes"], per_pass)
    return compiled


def _with_default_shape(path: str | os.PathLike[str], shapes: dict[str, tuple[int, ...]] | None
                        ) -> dict[str, tuple[int, ...]] | None:
    """Specialise a symbolic token input to DEFAULT_SHAPE when the user gave no shapes (the mesh needs static ones)."""
    if shapes or not str(path).endswith(".onnx") or not Path(path).is_file():
        return shapes  # load_model reports a missing or unreadable file
    from cgpt.frontend.onnx_reader import read_onnx

    try:
        model, _ = read_onnx(path)  # the graph structure only: weights stay in the file
    except CgptError:  # not a valid ONNX file: the importer says why when it reads it
        return shapes
    out = {}
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if len(dims) == 2 and any(not d.HasField("dim_value") for d in dims):
            out[inp.name] = tuple(d.dim_value if d.HasField("dim_value") else DEFAULT_SHAPE[i]
                                  for i, d in enumerate(dims))
    return out or None


def write_outputs(compiled: CompiledModel, outdir: str | os.PathLike[str], force: bool = False) -> Path:
    """Write model.cgir, weights.safetensors, report.json/.txt and placement.png into `outdir`, atomically."""
    out = Path(outdir)
    if out.exists():
        if not out.is_dir():
            raise CgptError("output exists and is not a directory", where=str(out))
        if not (out / OUTPUT_MARKER).exists() and not force and any(out.iterdir()):
            raise CgptError("output directory exists and was not made by cgpt; pass --force to overwrite it",
                            where=str(out))
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise CgptError(f"directory '{parent}' does not exist", where=str(out))
    if not os.access(parent, os.W_OK):
        raise CgptError(f"directory '{parent}' is not writable", where=str(out))
    tmp = make_temp_dir(parent, f".{out.name}.")
    try:
        (tmp / OUTPUT_MARKER).write_text("made by cgpt-compile\n")
        write_cgir(compiled.module, tmp / "model.cgir", tmp / "weights.safetensors")
        if compiled.report is not None:
            write_text_atomic(tmp / "report.json", json.dumps(compiled.report, indent=2, sort_keys=True) + "\n")
            from cgpt.backends.mesh.report import render_text

            write_text_atomic(tmp / "report.txt", render_text(compiled.report))
            _draw(compiled, tmp / "placement.png")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _draw(compiled: CompiledModel, path: Path) -> None:
    from cgpt.backends.mesh.picture import draw_placement
    from cgpt.backends.mesh.program import module_target, transfer_routes
    from cgpt.backends.mesh.report import region_rects

    assert compiled.report is not None
    target = module_target(compiled.module)
    rects, labels, groups = region_rects(compiled.report)
    if compiled.report["mode"] == "streaming":
        rects = dict(list(rects.items())[:1])  # every op uses the whole mesh in turn
        labels = {k: "all ops, in sequence" for k in rects}
        routes = None
    else:
        routes = transfer_routes(compiled.module.main, target)
    draw_placement(path, target, rects, labels, groups, routes,
                   title=f"{compiled.module.name} on {target.name}, {compiled.report['mode']}")

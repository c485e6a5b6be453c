"""cgpt-compile for the mesh on real exports: valid placements near their bounds, deterministic outputs, placement
that changes no meaning, hand-edited placements re-verified, and the memory error when a model does not fit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from cgpt.backends.reference.interpreter import run_module
from cgpt.driver import compile_model, write_outputs
from cgpt.frontend.load import load_model
from cgpt.ir.diagnostics import CompileError
from tests.models import exported_model

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "report.schema.json").read_text())
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _check_report(report: dict) -> None:
    jsonschema.validate(report, SCHEMA)
    t = report["target"]
    for r in report["regions"]:
        assert 0 <= r["x"] and r["x"] + r["w"] <= t["width"] and 0 <= r["y"] and r["y"] + r["h"] <= t["height"]
        assert r["sram_bytes_per_pe_max"] <= t["sram_usable_bytes_per_pe"]
    assert report["stage_cycles_max"] >= report["stage_cycles_lower_bound"] > 0
    if report["mode"] == "pipelined":
        assert report["stage_cycles_max"] <= 1.25 * report["stage_cycles_lower_bound"]
        assert report["wirelength"] <= 2.0 * report["wirelength_lower_bound"]
        assert report["link_load"]["colors_max_per_pe"] <= 24


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("mode", ["pipelined", "streaming"])
def test_tiny_compiles_for_mesh_64x64_within_bounds(exporter: str, mode: str, tmp_path: Path) -> None:
    model = exported_model("gpt-tiny", exporter)
    compiled = compile_model(model, preset="mesh-64x64", mode=mode, shapes={"input_ids": (1, 32)})
    _check_report(compiled.report)
    # 9 per layer x 2 + embedding, final norm, LM head; a tied embedding shares its LM head's region
    assert len(compiled.report["regions"]) == 21 - _tied(compiled)
    assert sorted({r["layer"] for r in compiled.report["regions"]}) == [-1, 0, 1]
    out = write_outputs(compiled, tmp_path / "out")
    assert {p.name for p in out.iterdir()} >= {"model.cgir", "weights.safetensors", "report.json", "report.txt",
                                                "placement.png"}
    # Placement changes no meaning: the reference backend gives the fused program's logits.
    ids = np.random.default_rng(1).integers(0, 512, size=(1, 32), dtype=np.int64)
    fused = compile_model(model, target="reference", shapes={"input_ids": (1, 32)})
    want = run_module(fused.module, {"input_ids": ids})
    got = run_module(load_model(out), {"input_ids": ids})
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_compiling_twice_gives_identical_files(tmp_path: Path) -> None:
    model = exported_model("gpt-tiny", "torchscript")
    outs = []
    for i in range(2):
        compiled = compile_model(model, preset="mesh-64x64", shapes={"input_ids": (2, 16)})
        outs.append(write_outputs(compiled, tmp_path / f"out{i}"))
    for name in ("model.cgir", "weights.safetensors", "placement.png", "report.txt"):
        a, b = ((o / name).read_bytes() for o in outs)
        if name == "report.txt":
            a, b = (x.replace(x[x.find(b"compile time"):x.find(b"\n", x.find(b"compile time"))], b"") for x in (a, b))
        assert a == b, name
    reports = [json.loads((o / "report.json").read_text()) for o in outs]
    for r in reports:
        r.pop("compile")
    assert reports[0] == reports[1]


def test_placed_program_reverifies_and_rejects_hand_edits(tmp_path: Path) -> None:
    compiled = compile_model(exported_model("gpt-tiny", "torchscript"), preset="mesh-64x64",
                             shapes={"input_ids": (1, 32)})
    out = write_outputs(compiled, tmp_path / "out")
    text = (out / "model.cgir").read_text()
    ok = subprocess.run(["cgpt-opt", str(out / "model.cgir"), "-o", str(tmp_path / "again.cgir")],
                        capture_output=True, text=True, env=ENV)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "again.cgir").read_text() == text
    regions = [r for r in compiled.report["regions"]]
    first, second = regions[1], regions[2]
    edits = {
        "overlap": (_rect(second), _rect({**second, "x": first["x"], "y": first["y"]}), "regions overlap"),
        "outside": (_rect(first), _rect({**first, "x": 64 - first["w"] + 1}), "leaves the 64x64 mesh"),
    }
    big = max(regions, key=lambda r: r["weight_bytes"])
    line = next(ln for ln in text.splitlines() if _rect(big) in ln and "= mesh.linear(" in ln)
    tiling = re.search(r"tiling = #mesh.tiling<[^>]*>", line).group()
    edits["sram"] = (line, line.replace(tiling, "tiling = #mesh.tiling<w = 1, h = 1>"), "bytes of SRAM per PE")
    for name, (old, new, message) in edits.items():
        bad = tmp_path / f"{name}.cgir"
        bad.write_text(text.replace(old, new))
        (tmp_path / f"{name}.safetensors").write_bytes((out / "weights.safetensors").read_bytes())
        proc = subprocess.run(["cgpt-opt", str(bad)], capture_output=True, text=True, env=ENV)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, (name, proc.stderr)


def _rect(r: dict) -> str:
    return f"#mesh.rect<x = {r['x']}, y = {r['y']}, w = {r['w']}, h = {r['h']}>"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pipelined", "streaming"])
def test_111m_compiles_for_wse2_within_bounds(mode: str, gpt111m_torchscript: Path) -> None:
    compiled = compile_model(gpt111m_torchscript, preset="wse2", mode=mode)
    _check_report(compiled.report)
    assert len(compiled.report["regions"]) == 9 * 10 + 3 - _tied(compiled)


def _tied(compiled) -> bool:  # type: ignore[no-untyped-def]
    return any("+" in r["op"] for r in compiled.report["regions"])


@pytest.mark.slow
def test_13b_f32_pipelined_does_not_fit_and_streaming_compiles(tmp_path: Path) -> None:
    path = exported_model("cerebras-gpt-13b", "dynamo", no_weights=True)
    with pytest.raises(CompileError) as info:
        compile_model(path, preset="wse2", mode="pipelined", dtype="f32")
    message = info.value.message
    assert "does not fit on wse2 in pipelined mode" in message and "--mode streaming" in message
    compiled = compile_model(path, preset="wse2", mode="streaming", dtype="f32")
    _check_report(compiled.report)

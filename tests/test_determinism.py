"""Compiling the same model twice, in processes with different hash seeds, gives byte-identical outputs (IR,
weights, picture, report minus timings): pass order, dict order and hashing never leak into outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import exported_model

ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _compile(model: Path, out: Path, seed: str, mode: str) -> None:
    env = dict(ENV, PYTHONHASHSEED=seed)
    proc = subprocess.run(["cgpt-compile", str(model), "--preset", "mesh-64x64", "--mode", mode, "--shape",
                           "input_ids=2x16", "-o", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("mode", ["pipelined", "streaming"])
def test_outputs_do_not_depend_on_hash_seed(mode: str, tmp_path: Path) -> None:
    model = exported_model("gpt-tiny", "dynamo")
    a, b = tmp_path / "a", tmp_path / "b"
    _compile(model, a, "1", mode)
    _compile(model, b, "12345", mode)
    for name in ("model.cgir", "weights.safetensors", "placement.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (a, b))
    ra.pop("compile")
    rb.pop("compile")
    assert ra == rb

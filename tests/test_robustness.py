"""Round trips and hostile inputs on real exports: IR dumps that re-parse to the same text and run bit for bit,
mutated real dumps that fail cleanly, absurd dims, stdin input, the Python API."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cgpt
from cgpt.frontend.onnx_import import import_onnx
from cgpt.ir.diagnostics import CgptError, ParseError
from cgpt.ir.parser import parse_module
from cgpt.ir.printer import print_module
from cgpt.ir.verifier import verify_module
from cgpt.passes.manager import PassManager
from cgpt.passes.pipeline import parse_pipeline
from tests.models import exported_model

ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
EXAMPLES = int(os.environ.get("CGPT_FUZZ_EXAMPLES", "100"))


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, env=ENV, input=stdin)


def test_onnx_to_ir_and_back_is_stable_and_runs_bit_for_bit(tmp_path: Path) -> None:
    model = exported_model("gpt-tiny", "dynamo")
    m1, m2 = tmp_path / "m.cgir", tmp_path / "m2.cgir"
    assert run("cgpt-opt", str(model), "-o", str(m1)).returncode == 0
    assert run("cgpt-opt", str(m1), "-o", str(m2)).returncode == 0
    assert m1.read_text() == m2.read_text()
    np.savez(tmp_path / "in.npz", input_ids=np.arange(14).reshape(2, 7) % 512)
    outs = []
    for src in (model, m1):
        out = tmp_path / f"{src.stem}.npz"
        proc = run("cgpt-run", str(src), "--backend", "reference", "--inputs", str(tmp_path / "in.npz"),
                   "--output", str(out))
        assert proc.returncode == 0, proc.stderr
        outs.append(np.load(out)["logits"])
    assert np.array_equal(outs[0], outs[1])


def test_ir_from_stdin() -> None:
    text = (
        "module @m {\n  func @main(%x: tensor<4xf32>) -> (tensor<4xf32>) {\n"
        "    %0 = neg(%x) : (tensor<4xf32>) -> tensor<4xf32>\n"
        "    %1 = exp(%x) : (tensor<4xf32>) -> tensor<4xf32>\n"
        "    return %0 : tensor<4xf32>\n  }\n}\n"
    )
    proc = run("cgpt-opt", "-", "-p", "dce", stdin=text)
    assert proc.returncode == 0, proc.stderr
    assert "neg(%x)" in proc.stdout and "exp(" not in proc.stdout


@pytest.mark.parametrize("dim", [0, 2**40])
def test_absurd_input_dims_fail_cleanly(dim: int, tmp_path: Path) -> None:
    model = onnx.load(str(exported_model("gpt-tiny", "torchscript")))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = dim
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    proc = run("cgpt-compile", str(path), "--preset", "mesh-64x64", "-o", str(tmp_path / "o"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_negative_shape_is_a_usage_error(tmp_path: Path) -> None:
    proc = run("cgpt-compile", str(exported_model("gpt-tiny", "torchscript")), "--shape", "input_ids=1x-5")
    assert proc.returncode == 2 and "input_ids" in proc.stderr


@pytest.fixture(scope="module")
def fused_dump() -> str:
    module = import_onnx(exported_model("gpt-tiny", "torchscript"))
    PassManager(parse_pipeline("canonicalize,fuse")).run(module)
    return print_module(module)


@settings(max_examples=EXAMPLES, deadline=5000)
@given(st.data())
def test_mutated_real_dumps_parse_verify_or_fail_with_our_diagnostics(fused_dump: str, data: st.DataObject) -> None:
    lines = fused_dump.splitlines(keepends=True)
    i = data.draw(st.integers(0, len(lines) - 1))
    kind = data.draw(st.sampled_from(["delete", "swap", "digit", "char"]))
    if kind == "delete":
        del lines[i]
    elif kind == "swap":
        j = data.draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "digit":
        lines[i] = re.sub(r"\d+", lambda m: str(int(m.group()) + data.draw(st.integers(1, 9))), lines[i], count=1)
    else:
        pos = data.draw(st.integers(0, max(len(lines[i]) - 1, 0)))
        lines[i] = lines[i][:pos] + data.draw(st.sampled_from(list("%{}()<>,:=x?\"#"))) + lines[i][pos + 1 :]
    try:
        verify_module(parse_module("".join(lines), "dump.cgir"))
    except ParseError as err:
        assert err.where is not None and err.where.startswith("dump.cgir:")
    except CgptError as err:
        assert "error:" in err.headline()


def test_python_api_mirrors_the_cli(tmp_path: Path) -> None:
    model = cgpt.compile(exported_model("gpt-tiny", "torchscript"), target="mesh", preset="mesh-64x64",
                         shapes={"input_ids": (1, 16)})
    assert model.report is not None and model.report["target"]["name"] == "mesh-64x64"
    ids = np.arange(16).reshape(1, 16)
    ref = next(iter(model.run({"input_ids": ids}, backend="reference").values()))
    sim = next(iter(model.run({"input_ids": ids}, backend="sim").values()))
    assert np.abs(sim - ref).max() <= 1e-5 * np.abs(ref).max()
    out = model.save(tmp_path / "out")
    assert (out / "model.cgir").exists() and (out / "report.json").exists()

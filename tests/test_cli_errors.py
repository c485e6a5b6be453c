"""Every command's error paths: one `error:` line, the documented exit code, no traceback, no output left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import exported_model

ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, env=ENV)


def assert_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    if code == 1:
        first = proc.stderr.strip().splitlines()[0]
        assert "error:" in first, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


@pytest.mark.parametrize("tool", ["cgpt-export", "cgpt-opt", "cgpt-compile", "cgpt-run", "cgpt"])
def test_help_and_version(tool: str) -> None:
    assert run(tool, "--help").returncode == 0
    proc = run(tool, "--version")
    assert proc.returncode == 0 and "0.1.0" in proc.stdout


def test_missing_input_files(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.onnx")
    assert_error(run("cgpt-compile", missing, "-o", str(tmp_path / "o")), 1, "nope.onnx", "no such file")
    assert_error(run("cgpt-opt", str(tmp_path / "nope.cgir")), 1, "nope.cgir")
    assert_error(run("cgpt-run", missing, "--backend", "reference"), 1, "nope.onnx")
    assert not (tmp_path / "o").exists()


def test_wrong_extension(tmp_path: Path) -> None:
    bad = tmp_path / "model.txt"
    bad.write_text("hello")
    assert_error(run("cgpt-compile", str(bad)), 1, "model.txt", "extension")


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    model = str(exported_model("gpt-tiny", "torchscript"))
    assert_error(run("cgpt-compile", model, "--mode", "sideways"), 2)
    assert_error(run("cgpt-compile", model, "--shape", "input_ids=1xq"), 2)
    assert_error(run("cgpt-opt", model, "--no-such-flag"), 2)
    assert_error(run("cgpt", "frobnicate"), 2)


def test_bad_preset_and_target_file(tmp_path: Path) -> None:
    model = str(exported_model("gpt-tiny", "torchscript"))
    assert_error(run("cgpt-compile", model, "--preset", "wse9", "-o", str(tmp_path / "o")), 1, "wse9", "wse2")
    toml = tmp_path / "t.toml"
    toml.write_text('name = "t"\nwidht = 4\n')
    assert_error(run("cgpt-compile", model, "--target-config", str(toml), "-o", str(tmp_path / "o")), 1, "widht")
    assert not (tmp_path / "o").exists()


def test_output_directory_that_does_not_exist_or_is_foreign(tmp_path: Path) -> None:
    model = str(exported_model("gpt-tiny", "torchscript"))
    assert_error(run("cgpt-compile", model, "--preset", "mesh-64x64", "-o", str(tmp_path / "no" / "out")), 1,
                 "does not exist")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    assert_error(run("cgpt-compile", model, "--preset", "mesh-64x64", "-o", str(foreign)), 1, "--force")
    assert (foreign / "precious.txt").read_text() == "keep me"
    ok = run("cgpt-compile", model, "--preset", "mesh-64x64", "-o", str(tmp_path / "made"))
    assert ok.returncode == 0, ok.stderr
    again = run("cgpt-compile", model, "--preset", "mesh-64x64", "-o", str(tmp_path / "made"))
    assert again.returncode == 0, again.stderr  # a directory cgpt made is replaced without --force


def test_opt_output_is_atomic_and_not_overwritten_without_force(tmp_path: Path) -> None:
    src = tmp_path / "in.cgir"
    src.write_text("module @m {\n  func @main(%x: tensor<4xf32>) -> (tensor<4xf32>) {\n    return %x : tensor<4xf32>\n"
                   "  }\n}\n")
    out = tmp_path / "out.cgir"
    out.write_text("old")
    assert_error(run("cgpt-opt", str(src), "-o", str(out)), 1, "--force")
    assert out.read_text() == "old"
    broken = tmp_path / "broken.cgir"
    broken.write_text(src.read_text().replace("return %x", "return %y"))
    assert_error(run("cgpt-opt", str(broken), "-o", str(tmp_path / "new.cgir")), 1, "broken.cgir:3:")
    assert not (tmp_path / "new.cgir").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run("cgpt-opt", str(tmp_path / "nope.cgir"), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_unwritable_output_directory_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # CI runs as root, for whom permission bits do not stop a write: make the directory report itself unwritable.
    from cgpt.ir.diagnostics import CgptError
    from cgpt.ir.files import write_text_atomic

    real_access = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    with pytest.raises(CgptError, match="is not writable"):
        write_text_atomic(locked / "out.cgir", "text")
    from cgpt.driver import compile_model, write_outputs

    compiled = compile_model(exported_model("gpt-tiny", "torchscript"), preset="mesh-64x64",
                             shapes={"input_ids": (1, 8)})
    with pytest.raises(CgptError, match="is not writable"):
        write_outputs(compiled, locked / "out")
    assert list(locked.iterdir()) == []


def test_run_does_not_overwrite_outputs_without_force(tmp_path: Path) -> None:
    model = str(exported_model("gpt-tiny", "torchscript"))
    out = tmp_path / "out.npz"
    out.write_bytes(b"keep")
    args = ("cgpt-run", model, "--backend", "reference", "--shape", "input_ids=1x4", "--output", str(out))
    assert_error(run(*args), 1, "--force")
    assert out.read_bytes() == b"keep"
    assert run(*args, "--force").returncode == 0
    assert out.read_bytes() != b"keep"

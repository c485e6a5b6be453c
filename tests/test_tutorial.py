"""docs/writing-a-pass.md is executed: its pass loads into cgpt-opt, its filecheck test passes, and it preserves
meaning on a real export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.models import exported_model

DOC = Path(__file__).parents[1] / "docs" / "writing-a-pass.md"
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _blocks(lang: str) -> list[str]:
    """The fenced code blocks of the tutorial whose info string is `lang`."""
    blocks, current, info = [], None, ""
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == lang:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


@pytest.fixture(scope="module")
def pass_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tutorial") / "my_pass.py"
    path.write_text("\n".join(_blocks("python")))
    return path


def test_tutorial_pass_fuses_every_residual_and_preserves_logits(pass_file: Path, tmp_path: Path) -> None:
    model = exported_model("gpt-tiny", "torchscript")
    out = tmp_path / "out.cgir"
    cmd = ["cgpt-opt", str(model), "-p", "canonicalize,fuse,fuse-residual-epilogue", "--load-pass", str(pass_file),
           "--op-stats", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    assert stats.get("linear_residual") == 4 and "residual" not in stats  # gpt-tiny: 2 layers x 2 residuals

    ids = np.random.default_rng(0).integers(0, 512, size=(2, 9), dtype=np.int64)
    import onnxruntime as ort

    want = ort.InferenceSession(str(model)).run(None, {"input_ids": ids})[0]
    np.save(tmp_path / "ids.npy", ids)
    script = (
        "import numpy as np, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('my_pass', {str(pass_file)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "from cgpt.ir.module_files import read_cgir\n"
        "from cgpt.backends.reference.interpreter import run_module\n"
        f"ids = np.load({str(tmp_path / 'ids.npy')!r})\n"
        f"out = run_module(read_cgir({str(out)!r}), {{'input_ids': ids}})\n"
        f"np.save({str(tmp_path / 'got.npy')!r}, next(iter(out.values())))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "got.npy")
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_tutorial_filecheck_block_passes(pass_file: Path, tmp_path: Path) -> None:
    (block,) = [b for b in _blocks("") if "// RUN:" in b]
    case = tmp_path / "case.cgir"
    case.write_text(block.replace("my_pass.py", str(pass_file)))
    run = block.splitlines()[0].removeprefix("// RUN:").strip().replace("%s", str(case))
    run = run.replace("my_pass.py", str(pass_file))
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {run}"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr

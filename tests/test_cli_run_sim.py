"""cgpt-run --backend sim on a cgpt-compile output directory: values, sim.json, trace.json, --no-values."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from cgpt.backends.reference.interpreter import run_module
from cgpt.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from cgpt.cli.run import main
from cgpt.driver import compile_model
from tests.models import exported_model


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiled = compile_model(exported_model("gpt-tiny", "torchscript"), preset="mesh-64x64", dtype="f32",
                             shapes={"input_ids": (2, 32)}, out=io.StringIO())
    return compiled.save(tmp_path_factory.mktemp("compiled") / "out")


def test_sim_writes_values_report_and_trace(outdir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ids = np.random.default_rng(0).integers(0, 512, size=(2, 32)).astype(np.int64)
    np.savez(tmp_path / "in.npz", input_ids=ids)
    code = main([str(outdir), "--backend", "sim", "--inputs", str(tmp_path / "in.npz"), "--output",
                 str(tmp_path / "out.npz"), "--report", str(tmp_path / "sim.json"),
                 "--trace", str(tmp_path / "t.json")])
    assert code == EXIT_OK
    assert "cycles per sample" in capsys.readouterr().err
    with np.load(tmp_path / "out.npz") as out:
        logits = out["logits"]
    from cgpt.frontend.load import load_model

    ref = run_module(load_model(outdir), {"input_ids": ids})["logits"]
    assert np.abs(logits - ref).max() <= 1e-5 * np.abs(ref).max()
    report = json.loads((tmp_path / "sim.json").read_text())
    assert report["values"] is True and report["batch"] == 2 and report["cycles_per_sample"] > 0
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]


def test_sim_no_values_needs_no_inputs(outdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(outdir), "--backend", "sim", "--no-values", "--report", str(tmp_path / "sim.json"), "-q"])
    assert code == EXIT_OK
    assert capsys.readouterr().err == ""
    report = json.loads((tmp_path / "sim.json").read_text())
    assert report["values"] is False and report["regions"]


@pytest.mark.parametrize("argv", [["--no-values", "--output", "x.npz"],
                                  ["--backend", "reference", "--report", "r.json"]])
def test_sim_options_misused_are_usage_errors(outdir: Path, argv: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    backend = [] if "--backend" in argv else ["--backend", "sim"]
    with pytest.raises(SystemExit) as exit_:  # argparse's parser.error, as for a bad --shape
        main([str(outdir), *backend, *argv])
    assert exit_.value.code == EXIT_USAGE
    assert "error:" in capsys.readouterr().err


def test_sim_on_an_unplaced_model_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(exported_model("gpt-tiny", "torchscript")), "--backend", "sim", "--shape", "input_ids=1x8"])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not placed" in err[0]

"""The `make demo` script end to end on gpt-tiny: export, compile, simulate, compare with onnxruntime, summarise."""

from __future__ import annotations

import json
from pathlib import Path

from cgpt.demo import main, run_demo, summary


def test_demo_script_on_gpt_tiny(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out, cache = tmp_path / "demo", tmp_path / "cache"
    r = run_demo("gpt-tiny", preset="mesh-64x64", dtype="f32", seq=32, out=out, cache=cache)
    assert "export" in r.seconds and r.onnx.exists()
    assert r.ops_imported > 100 and r.ops_fused == 21  # 9 per layer x 2 + 3
    assert r.regions in (20, 21) and 0 < r.pes_used <= r.pes_total == 64 * 64
    assert r.latency_s > 0 and r.tokens_per_s > 0 and 0 < r.utilization < 1
    assert r.bottleneck.startswith("r")
    assert r.max_rel_error <= 1e-5 and r.argmax_agreement == 1.0
    for path in r.files.values():
        assert Path(path).exists(), path
    assert json.loads((out / "sim.json").read_text())["bottleneck"]["region"] == r.bottleneck
    text = summary(r)
    for line in ("ops", "placement", "predicted latency", "predicted throughput", "utilization", "bottleneck",
                 "simulator vs ORT", "trace (open in ui.perfetto.dev)"):
        assert line in text

    # A second run, through the command line, reuses the cached export and prints the summary on stdout.
    capsys.readouterr()
    assert main(["--model", "gpt-tiny", "--preset", "mesh-64x64", "--dtype", "f32", "--seq", "32",
                 "--out", str(out), "--cache", str(cache)]) == 0
    printed = capsys.readouterr().out
    assert "export (cached)" in printed and "simulator vs ORT" in printed

"""`make demo`: export Cerebras-GPT-111M (random weights, cached under build/), compile it for the wse2 mesh,
run it on the simulator and on onnxruntime with the same input, and print one summary.

    python -m cgpt.demo [--model cerebras-gpt-111m] [--preset wse2] [--mode pipelined] [--seq 128] [--out build/demo]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cgpt.cli.common import make_parser, run_command
from cgpt.ir.files import write_text_atomic

EXAMPLES = """\
  python -m cgpt.demo                                   Cerebras-GPT-111M on wse2, pipelined, f16, 1x128
  python -m cgpt.demo --model gpt-tiny --preset mesh-64x64 --dtype f32 --seq 32"""


@dataclass
class DemoResult:
    """What the demo measured (the summary prints these; the tests check them)."""

    model: str
    onnx: Path
    outdir: Path
    seconds: dict[str, float] = field(default_factory=dict)
    ops_imported: int = 0
    ops_fused: int = 0
    regions: int = 0
    pes_used: int = 0
    pes_total: int = 0
    latency_s: float = 0.0
    tokens_per_s: float = 0.0
    utilization: float = 0.0
    bottleneck: str = ""
    bottleneck_why: str = ""
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    argmax_agreement: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)


def run_demo(model: str = "cerebras-gpt-111m", preset: str = "wse2", mode: str = "pipelined", dtype: str | None = None,
             seq: int = 128, batch: int = 1, out: str | Path = "build/demo", cache: str | Path = "build",
             exporter: str = "torchscript") -> DemoResult:
    from cgpt.backends.mesh.simulator import simulate
    from cgpt.driver import compile_model, write_outputs
    from cgpt.frontend.export import export_gpt
    from cgpt.frontend.presets import get_preset
    from cgpt.passes.manager import PassManagerOptions

    outdir = Path(out)
    onnx_path = Path(cache) / f"{model}-{exporter}.onnx"
    res = DemoResult(model, onnx_path, outdir)
    start = time.perf_counter()
    if not onnx_path.exists():
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        export_gpt(onnx_path, preset=get_preset(model), exporter=exporter)
        res.seconds["export"] = time.perf_counter() - start
    else:
        res.seconds["export (cached)"] = 0.0

    start = time.perf_counter()
    fused = compile_model(onnx_path, target="reference", shapes={"input_ids": (batch, seq)})
    dumps = outdir.parent / f"{outdir.name}-ir"
    compiled = compile_model(onnx_path, target="mesh", preset=preset, mode=mode, dtype=dtype,
                             shapes={"input_ids": (batch, seq)},
                             options=PassManagerOptions(ir_dump_dir=str(dumps)))
    write_outputs(compiled, outdir)
    res.seconds["compile"] = time.perf_counter() - start
    res.ops_imported, res.ops_fused = fused.ops_before, fused.ops_after

    ids = np.random.default_rng(0).integers(0, _vocab(compiled), size=(batch, seq), dtype=np.int64)
    start = time.perf_counter()
    sim = simulate(compiled.module, {"input_ids": ids})
    res.seconds["simulate"] = time.perf_counter() - start
    write_text_atomic(outdir / "sim.json", json.dumps(sim.report, indent=2, sort_keys=True) + "\n")
    write_text_atomic(outdir / "trace.json", json.dumps(sim.trace) + "\n")

    import onnxruntime as ort

    start = time.perf_counter()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input_ids": ids})[0]
    res.seconds["onnxruntime"] = time.perf_counter() - start

    got = next(iter(sim.outputs.values())).astype(np.float32)
    res.max_abs_error = float(np.abs(got - expected).max())
    res.max_rel_error = res.max_abs_error / float(np.abs(expected).max())
    res.argmax_agreement = float((got.argmax(-1) == expected.argmax(-1)).mean())
    report, simr = compiled.report or {}, sim.report
    res.regions, res.pes_used = len(report.get("regions", [])), int(report.get("pes_used", 0))
    res.pes_total = int(report["target"]["width"] * report["target"]["height"]) if report else 0
    res.latency_s = float(simr.get("latency_s", 0.0))
    res.tokens_per_s = float(simr.get("throughput", {}).get("tokens_per_s", 0.0))
    res.utilization = float(simr.get("utilization", 0.0))
    bottleneck = simr.get("bottleneck", {})
    res.bottleneck = str(bottleneck.get("region", "")) if isinstance(bottleneck, dict) else str(bottleneck)
    res.bottleneck_why = str(bottleneck.get("why", "")) if isinstance(bottleneck, dict) else ""
    res.files = {"IR dumps": dumps, "placed IR": outdir / "model.cgir", "report": outdir / "report.txt",
                 "simulator report": outdir / "sim.json", "trace (open in ui.perfetto.dev)": outdir / "trace.json",
                 "placement picture": outdir / "placement.png"}
    return res


def _vocab(compiled: Any) -> int:
    for op in compiled.module.ops():
        if op.name.endswith("embedding"):
            return int(op.operands[1].type.shape[0])
    return 2


def summary(r: DemoResult) -> str:
    lines = [f"cgpt demo: {r.model}", "", "stage                seconds"]
    lines += [f"  {name:18s} {s:8.2f}" for name, s in r.seconds.items()]
    lines += [
        "",
        f"ops                  {r.ops_imported:,} imported -> {r.ops_fused:,} after canonicalize,fuse",
        f"placement            {r.regions} regions on {r.pes_used:,} of {r.pes_total:,} PEs",
        f"predicted latency    {r.latency_s * 1e3:.3f} ms per batch",
        f"predicted throughput {r.tokens_per_s:,.0f} tokens/s",
        f"utilization          {100 * r.utilization:.1f}% of peak",
        f"bottleneck           {r.bottleneck}" + (f" ({r.bottleneck_why})" if r.bottleneck_why else ""),
        f"simulator vs ORT     max |diff| {r.max_abs_error:.3g} ({r.max_rel_error:.3g} relative), "
        f"argmax agrees on {100 * r.argmax_agreement:.1f}% of positions",
        "",
        "files",
    ]
    lines += [f"  {name:32s} {path}" for name, path in r.files.items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("cgpt-demo", "Export, compile, simulate and check a Cerebras-GPT end to end.", EXAMPLES)
    p.add_argument("--model", default="cerebras-gpt-111m")
    p.add_argument("--preset", default="wse2")
    p.add_argument("--mode", choices=("pipelined", "streaming"), default="pipelined")
    p.add_argument("--dtype", choices=("f16", "bf16", "f32"), default=None)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--out", default="build/demo")
    p.add_argument("--cache", default="build", help="where the exported ONNX file is kept between runs")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def body(args: argparse.Namespace) -> int:
        r = run_demo(args.model, args.preset, args.mode, args.dtype, args.seq, args.batch, args.out, args.cache)
        print(summary(r))
        return 0

    return run_command(build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())

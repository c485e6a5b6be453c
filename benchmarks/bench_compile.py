"""Compile speed against onnxruntime's session creation on the same file, and placement quality (slowest stage and
wirelength against their lower bounds) for the Cerebras-GPT family on wse2 and wse3."""

from __future__ import annotations

import resource
import time

import onnxruntime as ort

from benchmarks.machine import median_seconds
from benchmarks.models import FAMILY, bench_model
from cgpt.driver import compile_model
from cgpt.ir.diagnostics import CompileError


def run() -> str:
    path = bench_model("cerebras-gpt-111m", "torchscript")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session_s = median_seconds(lambda: ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]),
                               repeat=3, warmup=0)
    compile_s = median_seconds(lambda: compile_model(path, preset="wse2"), repeat=3, warmup=0)
    lines = [
        "## Compile: speed and placement quality\n",
        "| what | seconds (median of 3) |", "|---|---|",
        f"| onnxruntime session creation, ENABLE_ALL, 111M TorchScript export | {session_s:.2f} |",
        f"| cgpt-compile 111M for wse2 (import, canonicalize, fuse, partition, place, route, memory, report) "
        f"| {compile_s:.2f} |",
        f"\nRatio: {compile_s / session_s:.2f}x onnxruntime's session creation (target <= 3x).\n",
    ]
    big = bench_model("cerebras-gpt-13b", no_weights=True)
    start = time.perf_counter()
    compile_model(big, preset="wse3", mode="streaming")
    big_s = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    lines.append(f"13B structure on wse3, streaming: {big_s:.1f} s (target <= 60 s); peak RSS of this benchmark "
                 f"process so far {peak_gb:.2f} GB (target <= 4 GB).\n")
    lines += ["| model | target | mode | regions | PEs used | stage / bound | wirelength / bound | compile s |",
              "|---|---|---|---|---|---|---|---|"]
    for preset in FAMILY:
        model = bench_model(preset, no_weights=True)
        for target in ("wse2", "wse3"):
            for mode in ("pipelined", "streaming"):
                start = time.perf_counter()
                try:
                    r = compile_model(model, preset=target, mode=mode).report
                except CompileError as err:
                    lines.append(f"| {preset} | {target} | {mode} | does not fit: {err.message[:90]}... | | | | |")
                    continue
                seconds = time.perf_counter() - start
                wl = (f"{r['wirelength'] / r['wirelength_lower_bound']:.2f}" if r["wirelength_lower_bound"]
                      else "n/a")
                lines.append(f"| {preset} | {target} | {mode} | {len(r['regions'])} | {r['pes_used']:,} | "
                             f"{r['stage_cycles_max'] / r['stage_cycles_lower_bound']:.3f} | {wl} | {seconds:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())

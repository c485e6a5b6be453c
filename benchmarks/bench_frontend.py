"""The frontend and reference backend on the 111M TorchScript export at batch 1, seq 128, 2 threads: forward time
against onnxruntime (ENABLE_ALL), torch eager and onnx's ReferenceEvaluator; import time and peak memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.machine import median_seconds
from benchmarks.models import bench_model

IMPORT_PROBE = """
import sys, time
import numpy as np
from cgpt.frontend.onnx_import import import_onnx
from cgpt.backends.reference.interpreter import run_module

def peak():  # VmHWM: the process's peak resident set, file-backed weight pages included
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

base = peak()
t = time.perf_counter(); m = import_onnx(sys.argv[1]); seconds = time.perf_counter() - t
after_import = peak()
run_module(m, {"input_ids": np.zeros((1, 128), dtype=np.int64)})
print(seconds, after_import - base, peak() - base, m.weights.nbytes())
"""


def run() -> str:
    import onnxruntime as ort
    import torch

    from cgpt.backends.reference.interpreter import run_module
    from cgpt.frontend.export import random_gpt2
    from cgpt.frontend.onnx_import import import_onnx
    from cgpt.frontend.presets import get_preset, to_gpt2_config

    path = bench_model("cerebras-gpt-111m", "torchscript")
    ids = np.random.default_rng(0).integers(0, 50257, size=(1, 128), dtype=np.int64)
    torch.set_num_threads(2)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    module = import_onnx(path)
    want = session.run(None, {"input_ids": ids})[0]
    got = next(iter(run_module(module, {"input_ids": ids}).values()))
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))

    ort_s = median_seconds(lambda: session.run(None, {"input_ids": ids}), repeat=7)
    ref_s = median_seconds(lambda: run_module(module, {"input_ids": ids}), repeat=7)
    model = random_gpt2(to_gpt2_config(get_preset("cerebras-gpt-111m")))
    tids = torch.from_numpy(ids)
    with torch.no_grad():
        torch_s = median_seconds(lambda: model(tids, use_cache=False).logits, repeat=7)
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))
    start = time.perf_counter()
    evaluator.run(None, {"input_ids": ids})
    onnx_ref_s = time.perf_counter() - start

    probe = subprocess.run([sys.executable, "-c", IMPORT_PROBE, str(path)], capture_output=True, text=True,
                           env=dict(os.environ, OPENBLAS_NUM_THREADS="2"), check=True)
    import_s, import_rss, run_rss, weight_bytes = (float(x) for x in probe.stdout.split())
    rows = [
        "## Frontend and reference backend (111M TorchScript export, batch 1, seq 128, 2 threads)\n",
        "| what | seconds (median of 7) | over onnxruntime |", "|---|---|---|",
        f"| onnxruntime, ORT_ENABLE_ALL | {ort_s:.3f} | 1.00 |",
        f"| cgpt reference backend | {ref_s:.3f} | {ref_s / ort_s:.2f} (target <= 1.25) |",
        f"| torch eager (the HF model, same weights) | {torch_s:.3f} | {torch_s / ort_s:.2f} |",
        f"| onnx ReferenceEvaluator (one run) | {onnx_ref_s:.3f} | {onnx_ref_s / ort_s:.2f} |",
        "",
        f"Import of the {os.path.getsize(path) / 2**20:.0f} MiB file: {import_s:.2f} s (target <= 3 s); peak memory "
        f"over the interpreter's baseline {import_rss / 2**20:.0f} MiB after import and {run_rss / 2**20:.0f} MiB "
        f"after a forward pass, against {weight_bytes / 2**20:.0f} MiB of weights "
        f"({run_rss / weight_bytes:.2f}x; target <= 1.5x).",
    ]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(run())

"""`canonicalize,fuse` reduces every GPT export to the fused ops of the model, and nothing else.

For L layers: exactly L `attention`, 2L+1 `layer_norm`, 4L+1 `linear` (L of them with gelu), 1 `embedding`, no
Erf, Softmax, Trilu, Shape, Range, ReduceMean or Gemm left, and at most 9L+4 ops besides weights and constants
(per layer 2 layer norms, 4 linears, the attention and 2 residual adds; plus embedding, final norm and LM head).
Each export is checked with symbolic shapes and specialised to input_ids=1x128, and the fused logits must match
onnxruntime on the original model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cgpt.backends.reference.interpreter import run_module
from cgpt.frontend.load import load_model
from cgpt.ir.core import Module
from cgpt.passes.manager import PassManager
from cgpt.passes.op_stats import op_counts
from cgpt.passes.pipeline import parse_pipeline
from tests.models import exported_model
from tests.pass_harness import random_ids, relative_error

FORBIDDEN = ("erf", "softmax", "trilu", "shape", "range", "reduce_mean", "gemm")
SOURCE_OPS = ("weight", "constant")
SPECIALISED = {"input_ids": (1, 128)}
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


@dataclass(frozen=True)
class Export:
    """One exported model: tests.models.exported_model arguments, its layer count and vocabulary."""

    id: str
    preset: str
    layers: int
    vocab: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    slow: bool = False

    def path(self) -> Path:
        return exported_model(self.preset, **self.kwargs)


TINY = dict(preset="gpt-tiny", layers=2, vocab=512)
C111M = dict(preset="cerebras-gpt-111m", layers=10, vocab=50257, slow=True)
EXPORTS = [
    Export("tiny-torchscript-sdpa", **TINY, kwargs=dict(exporter="torchscript")),
    Export("tiny-torchscript-eager", **TINY, kwargs=dict(exporter="torchscript", attn="eager")),
    Export("tiny-torchscript-opset14", **TINY, kwargs=dict(exporter="torchscript", opset=14)),
    Export("tiny-dynamo-opset18", **TINY, kwargs=dict(exporter="dynamo")),
    Export("tiny-dynamo-opset20", **TINY, kwargs=dict(exporter="dynamo", opset=20)),
    Export("tiny-dynamo-opset18-eager", **TINY, kwargs=dict(exporter="dynamo", attn="eager")),
    Export("tiny-nanogpt-opset14", **TINY, kwargs=dict(exporter="torchscript", opset=14, kind="nanogpt")),
    # real Cerebras-GPT-111M dims (d_model 768, 12 heads, vocab 50257), two layers: part of every run
    Export("111m-l2-torchscript", "cerebras-gpt-111m", 2, 50257, dict(exporter="torchscript", layers=2)),
    Export("111m-torchscript-sdpa", **C111M, kwargs=dict(exporter="torchscript")),
    Export("111m-torchscript-eager", **C111M, kwargs=dict(exporter="torchscript", attn="eager")),
    Export("111m-dynamo-opset18", **C111M, kwargs=dict(exporter="dynamo")),
    Export("111m-dynamo-opset20", **C111M, kwargs=dict(exporter="dynamo", opset=20)),
    Export("111m-nanogpt-opset14", **C111M, kwargs=dict(exporter="torchscript", opset=14, kind="nanogpt")),
]


def _params(cli_ids: tuple[str, ...] = ()) -> list[Any]:
    params = []
    for e in EXPORTS:
        for shapes in (None, SPECIALISED):
            marks = [pytest.mark.slow] if e.slow else []
            via = "cli" if e.slow or e.id in cli_ids else "library"
            params.append(pytest.param(e, shapes, via, marks=marks,
                                       id=f"{e.id}-{'1x128' if shapes else 'symbolic'}-{via}"))
    return params


def fused_counts_problems(counts: dict[str, int], layers: int, module: Module | None = None) -> list[str]:
    """What is wrong with the op counts of a fused L-layer GPT (empty when everything holds)."""
    L = layers
    want = {"attention": L, "layer_norm": 2 * L + 1, "linear": 4 * L + 1, "embedding": 1}
    problems = [f"{n}: {counts.get(n, 0)}, expected {k}" for n, k in want.items() if counts.get(n, 0) != k]
    problems += [f"{n} left: {counts[n]}" for n in FORBIDDEN if counts.get(n)]
    compute = sum(c for n, c in counts.items() if n not in SOURCE_OPS)
    if compute > 9 * L + 4:
        problems.append(f"{compute} ops besides weights and constants, at most {9 * L + 4} allowed")
    if module is not None:
        gelu = sum(1 for op in module.ops() if op.name == "linear" and op.attributes.get("activation") == "gelu")
        if gelu != L:
            problems.append(f"{gelu} linear ops with gelu, expected {L}")
    return problems


def cgpt_opt(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the cgpt-opt command line (the IR on stdout is discarded)."""
    proc = subprocess.run(["cgpt-opt", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr
    return proc


def _shape_args(shapes: dict[str, tuple[int, ...]] | None) -> list[str]:
    return [f"--shape={name}={'x'.join(map(str, dims))}" for name, dims in (shapes or {}).items()]


@pytest.mark.parametrize("export, shapes, via", _params(cli_ids=("tiny-torchscript-sdpa",)))
def test_canonicalize_fuse_leaves_exactly_the_fused_model(export: Export, shapes: dict | None, via: str) -> None:
    path = export.path()
    module = PassManager(parse_pipeline("canonicalize,fuse")).run(load_model(path, shapes=shapes))
    counts = op_counts(module)
    if via == "cli":  # the issue's own command: `cgpt-opt model.onnx -p canonicalize,fuse --op-stats`
        proc = cgpt_opt(str(path), "-p", "canonicalize,fuse", "--op-stats", *_shape_args(shapes))
        assert json.loads(proc.stderr.strip().splitlines()[-1]) == counts
    problems = fused_counts_problems(counts, export.layers, module)
    assert not problems, f"{export.id}: {'; '.join(problems)}\nop counts: {counts}"

    import onnxruntime as ort

    ids = random_ids(export.vocab, *(shapes["input_ids"] if shapes else (2, 9)), seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {"input_ids": ids})[0]
    got = run_module(module, {"input_ids": ids})["logits"]
    assert got.shape == want.shape
    assert relative_error(got, want) <= 1e-4
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_count_check_catches_what_is_missing() -> None:
    """The checker itself: a model with one unfused GELU and an extra op fails for those reasons."""
    counts = {"attention": 2, "layer_norm": 5, "linear": 9, "embedding": 1, "residual": 4, "erf": 1, "mul": 2}
    problems = fused_counts_problems(counts, 2)
    assert problems == ["erf left: 1", "24 ops besides weights and constants, at most 22 allowed"]


def test_trace_names_each_fusion_with_the_onnx_nodes_it_absorbed() -> None:
    """--trace-patterns on a real export: one line per fusion, naming the pattern and the model's own nodes."""
    path = exported_model("gpt-tiny", "torchscript")
    trace = cgpt_opt(str(path), "-p", "canonicalize,fuse", "--trace-patterns").stderr.splitlines()

    def lines(pattern: str) -> list[str]:
        return [ln for ln in trace if ln.startswith(f"[{pattern}] ")]

    for i in range(2):
        attn = [ln for ln in lines("fuse-attention") if f"/transformer/h.{i}/attn/Softmax" in ln]
        assert len(attn) == 1, trace
        for node in ("Split", "MatMul", "Softmax", "MatMul_1", "Transpose_4"):
            assert f"/transformer/h.{i}/attn/{node}," in attn[0] or f"/transformer/h.{i}/attn/{node})" in attn[0]
        gelu = [ln for ln in lines("fuse-gelu.chain") if f"/transformer/h.{i}/mlp/act/Erf" in ln]
        assert len(gelu) == 1 and "-> gelu at loc(" in gelu[0]
    assert len(lines("fuse-layer-norm.onnx")) == 5
    assert len(lines("fuse-residual")) == 4
    embedding = lines("fuse-embedding")
    assert len(embedding) == 1
    assert all(f"/transformer/{n}" in embedding[0] for n in ("wte/Gather", "wpe/Gather", "Range", "Add"))
    assert len(lines("fuse-linear.gelu")) == 2


@pytest.mark.parametrize("export", [e for e in EXPORTS if e.preset == "gpt-tiny"], ids=lambda e: e.id)
def test_every_fused_op_points_back_to_its_own_onnx_nodes(export: Export) -> None:
    module = PassManager(parse_pipeline("canonicalize,fuse")).run(load_model(export.path()))
    owners: dict[str, list[str]] = {}
    for op in module.ops():
        if op.name in SOURCE_OPS:
            continue
        assert op.loc.names, f"'{op.name}' lost its location"
        for name in op.loc.names:
            owners.setdefault(name, []).append(op.name)
    shared = {n: ops for n, ops in owners.items() if len(ops) > 1}
    assert not shared, f"ONNX nodes claimed by several fused ops: {shared}"

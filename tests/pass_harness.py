"""Proving passes preserve meaning: run the reference backend before a pipeline and after each of its passes.

    from tests.pass_harness import assert_pipeline_preserves, random_ids

    assert_pipeline_preserves(model_path, "canonicalize,fuse-layer-norm,my-new-pass", {"input_ids": ids})

Each pass runs alone through the pass manager (so it is verified after it runs, as in a real pipeline), then the
module is executed and every output compared with the outputs before the pipeline: the largest absolute
difference must be within `rtol` of the largest absolute reference value. A failure names the pass that broke
meaning and how far off the outputs went. Works for any registered pass, built-in or a user's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from cgpt.ir.core import Module
from cgpt.passes.base import Pass
from cgpt.passes.manager import PassManager, PassManagerOptions
from cgpt.passes.pipeline import parse_pipeline

# `canonicalize,fuse` spelled out pass by pass, so a broken rewrite is pinned on the pass that did it.
CANONICALIZE_FUSE_EXPANDED = (
    "fold-constants,fold-shapes,simplify,normalize-gemm,canonicalize,"
    "fuse-layer-norm,fuse-gelu,fuse-attention,fuse-linear,fuse-embedding,fuse-residual,cse,dce"
)


@dataclass(frozen=True)
class PassCheck:
    """One row of the harness's record: after pass `name`, the worst relative error over all outputs."""

    name: str
    relative_error: float
    ops: int


def load_module(module_or_path: Module | str | os.PathLike[str],
                shapes: dict[str, tuple[int, ...]] | None = None) -> Module:
    """The module itself, or the model at a path (.onnx imported with `shapes`, .cgir parsed)."""
    if isinstance(module_or_path, Module):
        return module_or_path
    from cgpt.frontend.load import load_model

    return load_model(module_or_path, shapes=shapes)


def random_ids(vocab: int, batch: int, seq: int, seed: int = 0) -> np.ndarray:
    """int64 token ids in [0, vocab) of shape [batch, seq]."""
    return np.random.default_rng(seed).integers(0, vocab, size=(batch, seq), dtype=np.int64)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (the absolute error when `want` is all zeros); inf on a shape mismatch."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return float("inf")
    if got.size == 0:
        return 0.0
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    if not np.all(np.isfinite(diff)):
        return float("inf") if not np.array_equal(got, want, equal_nan=True) else 0.0
    scale = float(np.max(np.abs(want.astype(np.float64))))
    return float(diff.max()) / scale if scale > 0 else float(diff.max())


def assert_pipeline_preserves(
    module_or_path: Module | str | os.PathLike[str],
    pipeline: str | list[Pass],
    inputs: dict[str, np.ndarray],
    rtol: float = 1e-5,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> tuple[Module, list[PassCheck]]:
    """Run `pipeline` pass by pass on the module, requiring the reference backend's outputs to stay within `rtol`
    (relative to the largest reference magnitude) of what they were before the first pass.

    Returns the transformed module and one PassCheck per pass. Raises AssertionError naming the first pass after
    which an output moved too far (or changed shape or dtype), or CgptError from a pass or the verifier.
    """
    from cgpt.backends.reference.interpreter import run_module

    module = load_module(module_or_path, shapes)
    passes = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    reference = run_module(module, inputs)
    record: list[PassCheck] = []
    for index, p in enumerate(passes, start=1):
        PassManager([p], PassManagerOptions(verify=True)).run(module)
        outputs = run_module(module, inputs)
        if sorted(outputs) != sorted(reference):
            raise AssertionError(f"pass #{index} '{p.spec()}' changed the outputs from {sorted(reference)} to "
                                 f"{sorted(outputs)}")
        worst = 0.0
        for name, want in reference.items():
            got = outputs[name]
            err = relative_error(got, want)
            if err > rtol:
                raise AssertionError(
                    f"pass #{index} '{p.spec()}' broke meaning: output '{name}' is {got.dtype}{list(got.shape)} "
                    f"with relative error {err:.3g} (max |ref| {float(np.max(np.abs(want))):.4g}) against "
                    f"{want.dtype}{list(want.shape)} before the pipeline; rtol is {rtol:g}")
            worst = max(worst, err)
        record.append(PassCheck(p.spec(), worst, sum(1 for _ in module.ops())))
    return module, record

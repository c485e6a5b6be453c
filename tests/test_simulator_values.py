"""The simulator's values: tiled numerics match the reference backend (f32) and onnxruntime (f16), and partial
sums are reduced in the mesh's order, not numpy's."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from cgpt.backends.mesh.sim_values import chain_sum, tiled_attention, tiled_layer_norm, tiled_linear, tree_sum
from cgpt.backends.mesh.simulator import simulate
from cgpt.backends.reference.interpreter import run_module
from cgpt.driver import CompiledModel, compile_model
from cgpt.ir.ops import fused
from cgpt.ir.ops.mesh import MeshTiling
from tests.models import exported_model

F32_TOLERANCE = 1e-5
F16_TOLERANCE = 2e-2
F16_ARGMAX_AGREEMENT = 0.99


@cache
def _compiled(path: Path, preset: str, mode: str, dtype: str, batch: int, seq: int = 128) -> CompiledModel:
    return compile_model(path, preset=preset, mode=mode, dtype=dtype, shapes={"input_ids": (batch, seq)},
                         out=io.StringIO())


@cache
def _ort_logits(path: Path, batch: int, seq: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    ids = _ids(batch, seq, vocab)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return ids, session.run(None, {"input_ids": ids})[0]


def _ids(batch: int, seq: int, vocab: int) -> np.ndarray:
    return np.random.default_rng(batch).integers(0, vocab, size=(batch, seq)).astype(np.int64)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b).max() / np.abs(b).max())


def _check_f32(path: Path, preset: str, mode: str, batch: int, vocab: int) -> None:
    compiled = _compiled(path, preset, mode, "f32", batch)
    ids = _ids(batch, 128, vocab)
    sim = simulate(compiled.module, {"input_ids": ids}).outputs["logits"]
    ref = run_module(compiled.module, {"input_ids": ids})["logits"]
    assert sim.dtype == np.float32 and sim.shape == ref.shape
    assert _rel(sim, ref) <= F32_TOLERANCE


def _check_f16(path: Path, preset: str, mode: str, batch: int, vocab: int) -> None:
    compiled = _compiled(path, preset, mode, "f16", batch)
    ids, ort_logits = _ort_logits(path, batch, 128, vocab)
    sim = simulate(compiled.module, {"input_ids": ids}).outputs["logits"]
    assert sim.dtype == np.float16
    assert _rel(sim, ort_logits) <= F16_TOLERANCE
    assert (sim.argmax(-1) == ort_logits.argmax(-1)).mean() >= F16_ARGMAX_AGREEMENT


TINY_CASES = [(preset, mode, batch) for preset in ("mesh-16x16", "mesh-64x64", "wse2")
              for mode in ("pipelined", "streaming") for batch in (1, 2)]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize(("preset", "mode", "batch"), TINY_CASES)
def test_gpt_tiny_f32_matches_reference(exporter: str, preset: str, mode: str, batch: int) -> None:
    _check_f32(exported_model("gpt-tiny", exporter), preset, mode, batch, vocab=512)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize(("preset", "mode", "batch"), TINY_CASES)
def test_gpt_tiny_f16_matches_onnxruntime(exporter: str, preset: str, mode: str, batch: int) -> None:
    _check_f16(exported_model("gpt-tiny", exporter), preset, mode, batch, vocab=512)


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("mode", ["pipelined", "streaming"])
def test_cerebras_111m_f32_matches_reference(exporter: str, mode: str) -> None:
    _check_f32(exported_model("cerebras-gpt-111m", exporter), "wse2", mode, 1, vocab=50257)


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("mode", ["pipelined", "streaming"])
def test_cerebras_111m_f16_matches_onnxruntime(exporter: str, mode: str) -> None:
    _check_f16(exported_model("cerebras-gpt-111m", exporter), "wse2", mode, 1, vocab=50257)


@pytest.mark.slow
def test_cerebras_111m_batch_2_matches_reference() -> None:
    _check_f32(exported_model("cerebras-gpt-111m", "torchscript"), "wse2", "pipelined", 2, vocab=50257)


def _linear_case(dtype: type, k: int = 96, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((1, 16, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)


def _linear(x: np.ndarray, w: np.ndarray, tiling: MeshTiling) -> np.ndarray:
    return tiled_linear([x, w, None], {"transpose_w": False, "activation": "none", "tiling": tiling})


def test_linear_sums_row_blocks_in_chain_order() -> None:
    """One K element per row block: the result is the products added row 0 first, bit for bit, which neither
    the reverse order nor BLAS's blocked matmul reproduces."""
    x, w = _linear_case(np.float32)
    got = _linear(x, w, MeshTiling(4, 96))[0]
    products = x[0].T[:, :, None] * w[:, None, :]  # [k, token, n], each exactly rounded
    chain = products[0].copy()
    for p in products[1:]:
        chain += p
    reverse = products[-1].copy()
    for p in products[-2::-1]:
        reverse += p
    assert np.array_equal(got, chain)
    assert not np.array_equal(got, reverse)
    assert not np.array_equal(got, x[0] @ w)
    assert np.allclose(got, x[0] @ w, rtol=1e-5, atol=1e-5)


def test_linear_f16_accumulates_in_f32_not_f16() -> None:
    """f16 operands, f32 partial sums chained over 8 row blocks of 64, one rounding to f16 at the end. numpy's f16
    matmul (one f32 sum over all of K) lands on other f16 values, and partial sums kept in f16 on many more."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 64, 512)).astype(np.float16)
    w = rng.standard_normal((512, 256)).astype(np.float16)
    got = _linear(x, w, MeshTiling(4, 8))[0]
    xf, wf = x[0].astype(np.float32), w.astype(np.float32)
    parts = np.stack([xf[:, r * 64:(r + 1) * 64] @ wf[r * 64:(r + 1) * 64] for r in range(8)])
    assert got.dtype == np.float16
    assert np.array_equal(got, chain_sum(parts).astype(np.float16))
    assert (got != x[0] @ w).sum() > 0
    in_f16 = parts[0].astype(np.float16)
    for p in parts[1:]:
        in_f16 = in_f16 + p.astype(np.float16)
    assert (got != in_f16).mean() > 0.3


def test_linear_row_blocks_of_several_rows_and_a_short_last_block() -> None:
    """K = 100 over 8 row blocks of 13 (the last holds 9): zero padding adds nothing."""
    x, w = _linear_case(np.float32, k=100, n=40)
    got = _linear(x, w, MeshTiling(3, 8))[0]
    parts = np.stack([x[0, :, r * 13:(r + 1) * 13] @ w[r * 13:(r + 1) * 13] for r in range(8)])
    assert np.allclose(got, chain_sum(parts), rtol=1e-6, atol=1e-6)
    assert np.allclose(got, x[0] @ w, rtol=1e-5, atol=1e-5)


def test_one_token_linear_reduces_as_a_binomial_tree() -> None:
    """A GEMV's partials meet as collectives.tree_reduce_cycles costs them: PE i adds i+1, i+2, i+4 in turn."""
    x, w = _linear_case(np.float32, k=5, n=32)
    got = _linear(x[:, :1], w, MeshTiling(1, 5))[0, 0]
    p = x[0, 0][:, None] * w
    assert np.array_equal(got, ((p[0] + p[1]) + (p[2] + p[3])) + p[4])
    parts = np.random.default_rng(3).standard_normal((6, 10)).astype(np.float32)
    assert np.array_equal(tree_sum(parts), ((parts[0] + parts[1]) + (parts[2] + parts[3])) + (parts[4] + parts[5]))


def test_chain_sum_is_left_to_right_even_for_a_transposed_view() -> None:
    parts = np.random.default_rng(4).standard_normal((300, 7)).astype(np.float32)
    want = parts[0].copy()
    for p in parts[1:]:
        want += p
    assert np.array_equal(chain_sum(parts), want)
    assert np.array_equal(chain_sum(np.asfortranarray(parts)), want)


@pytest.mark.parametrize("key_rows", [1, 3, 16])
@pytest.mark.parametrize("mask", ["causal", "none"])
def test_attention_merges_key_blocks_like_the_reference(key_rows: int, mask: str) -> None:
    qkv = np.random.default_rng(5).standard_normal((2, 16, 3 * 4 * 8)).astype(np.float32)
    attrs = {"heads": 4, "head_dim": 8, "scale": 8 ** -0.5, "mask": mask}
    got = tiled_attention([qkv], {**attrs, "tiling": MeshTiling(2, key_rows)})
    want = fused.Attention.kernel([qkv], attrs)
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_layer_norm_chains_block_statistics_like_the_reference() -> None:
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((2, 5, 70)) * 3 + 1).astype(np.float32)
    g, b = rng.standard_normal(70).astype(np.float32), rng.standard_normal(70).astype(np.float32)
    got = tiled_layer_norm([x, g, b], {"epsilon": 1e-5, "tiling": MeshTiling(9, 2)})
    want = fused.LayerNorm.kernel([x, g, b], {"epsilon": 1e-5})
    assert np.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_values_need_inputs() -> None:
    from cgpt.ir.diagnostics import RunError

    compiled = _compiled(exported_model("gpt-tiny", "torchscript"), "mesh-16x16", "pipelined", "f32", 1)
    with pytest.raises(RunError, match="needs inputs"):
        simulate(compiled.module, None)

"""Matrix products: matmul (numpy semantics, batched and broadcast) and gemm (2-D, transposes, alpha/beta, bias)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cgpt.ir.ops.graph._base import GraphOp
from cgpt.ir.ops.graph._shapes import (
    broadcast_shapes,
    check_dtype,
    check_same_dtype,
    compute_dtype,
    merge_equal_dims,
    moved_bytes,
    static_numel,
)
from cgpt.ir.registry import Attr, Cost, InferContext, register_op
from cgpt.ir.types import FLOAT_DTYPES, INT_DTYPES, Dim, TensorType

NUMERIC = FLOAT_DTYPES | INT_DTYPES


def _product_flops(out_types: Sequence[TensorType], k: Dim) -> int:
    n = static_numel(out_types)
    return 0 if n is None or not isinstance(k, int) else 2 * n * k


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul computed in f32 for f16/bf16 (numpy has no BLAS for halves), cast back to the operand dtype."""
    dt = compute_dtype(a.dtype)
    if dt == a.dtype:
        return np.matmul(a, b)
    return np.matmul(a.astype(dt), b.astype(dt)).astype(a.dtype)


@register_op
class MatMul(GraphOp):
    """Matrix product with numpy semantics: batch dims broadcast, a 1-D operand is a vector.

        %z = matmul(%x, %w) : (tensor<?batchx?seqx768xf32>, tensor<768x64xf32>) -> tensor<?batchx?seqx64xf32>
    """

    name = "matmul"
    operands = ("a", "b")

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        a, b = ctx.type(0), ctx.type(1)
        dtype = check_same_dtype(ctx, [a, b])
        check_dtype(ctx, a, NUMERIC)
        if a.rank == 0 or b.rank == 0:
            raise ctx.error(f"operands must have rank >= 1, got {a} and {b}")
        sa = (1,) + a.shape if a.rank == 1 else a.shape
        sb = b.shape + (1,) if b.rank == 1 else b.shape
        try:
            merge_equal_dims(sa[-1], sb[-2])
        except ValueError:
            raise ctx.error(f"contraction dims differ: {a} and {b}") from None
        out = broadcast_shapes(ctx, [sa[:-2], sb[:-2]])
        out += (() if a.rank == 1 else (sa[-2],)) + (() if b.rank == 1 else (sb[-1],))
        return [TensorType(out, dtype)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return _mm(inputs[0], inputs[1])

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        k = in_types[0].shape[-1]
        return Cost(_product_flops(out_types, k), moved_bytes(in_types, out_types))


@register_op
class Gemm(GraphOp):
    """alpha * A' @ B' + beta * C for 2-D A, B (A' = A^T when transA, likewise B); C broadcasts to the result.

        %y = gemm(%a, %b, %c) {transB = true} : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<4x16xf32>
    """

    name = "gemm"
    operands = ("a", "b", "c?")
    attributes = {
        "alpha": Attr("float", 1.0, "scale of the product"),
        "beta": Attr("float", 1.0, "scale of c"),
        "transA": Attr("bool", False, "transpose a"),
        "transB": Attr("bool", False, "transpose b"),
    }

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        a, b = ctx.type(0), ctx.type(1)
        dtype = check_same_dtype(ctx, [a, b] + ([ctx.type(2)] if ctx.has(2) else []))
        check_dtype(ctx, a, NUMERIC)
        if a.rank != 2 or b.rank != 2:
            raise ctx.error(f"a and b must be 2-D, got {a} and {b}")
        m, ka = a.shape[::-1] if ctx.attrs["transA"] else a.shape
        kb, n = b.shape[::-1] if ctx.attrs["transB"] else b.shape
        try:
            merge_equal_dims(ka, kb)
        except ValueError:
            raise ctx.error(f"contraction dims differ: {a} and {b} (transA, transB as given)") from None
        out = (m, n)
        if ctx.has(2):
            c = ctx.type(2)
            # Unidirectional: each static dim of c is 1 or the result's dim.
            fits = c.rank <= 2 and all(
                not (isinstance(dc, int) and isinstance(do, int) and dc not in (1, do))
                for dc, do in zip(reversed(c.shape), reversed(out), strict=False)
            )
            if not fits:
                raise ctx.error(f"c of type {c} does not broadcast to {TensorType(out, dtype)}")
        return [TensorType(out, dtype)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        dt = compute_dtype(a.dtype)
        a = a.T if attrs["transA"] else a
        b = b.T if attrs["transB"] else b
        y = np.matmul(a.astype(dt, copy=False), b.astype(dt, copy=False))  # a fresh array: update it in place
        if attrs["alpha"] != 1.0:
            y *= np.asarray(attrs["alpha"], dtype=y.dtype)
        if c is not None and attrs["beta"] != 0.0:
            cc = c.astype(dt, copy=False)
            y += cc if attrs["beta"] == 1.0 else cc * np.asarray(attrs["beta"], dtype=y.dtype)
        return y.astype(inputs[0].dtype, copy=False)

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        a = in_types[0]
        k = a.shape[0] if attrs.get("transA") else a.shape[1]
        return Cost(_product_flops(out_types, k), moved_bytes(in_types, out_types))

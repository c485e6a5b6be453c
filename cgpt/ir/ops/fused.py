"""Fused transformer ops: what canonicalize + fuse reduce every GPT export to, and what the mesh passes place.

Each has exact semantics (its numpy kernel), a cost, and is what a region of PEs runs on the mesh.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from scipy.special import erf

from cgpt.ir.core import Operation
from cgpt.ir.diagnostics import VerifyError
from cgpt.ir.registry import Attr, Cost, InferContext, OpDef, register_op
from cgpt.ir.types import Dim, TensorType

ACTIVATIONS = ("none", "gelu", "gelu_tanh")
MASKS = ("causal", "none")
GELU_FLOPS = 14  # per element: erf or tanh polynomial (8) plus the scaling multiplies and add
_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


def _bytes(types: Sequence[TensorType]) -> int:
    return sum(t.nbytes or 0 for t in types)


def _numel(t: TensorType) -> int:
    return t.numel or 0


def _same_dim(ctx: InferContext, a: Dim, b: Dim, what: str) -> None:
    if isinstance(a, int) and isinstance(b, int) and a != b:
        raise ctx.error(f"{what}: {a} != {b}")


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """Exact GELU x * (1 + erf(x / sqrt 2)) / 2, or its tanh approximation; computed in f32, returned in x's dtype."""
    xf = x.astype(np.float32, copy=False)
    if approximate == "tanh":
        inner = np.float32(_SQRT_2_OVER_PI) * (xf + np.float32(0.044715) * xf * xf * xf)
        out = np.float32(0.5) * xf * (np.float32(1.0) + np.tanh(inner))
    else:
        out = np.float32(0.5) * xf * (np.float32(1.0) + erf(xf * np.float32(1.0 / np.sqrt(2.0))))
    return out.astype(x.dtype, copy=False)


def apply_activation(y: np.ndarray, activation: str) -> np.ndarray:
    if activation == "gelu":
        return gelu(y, "none")
    if activation == "gelu_tanh":
        return gelu(y, "tanh")
    return y


class FusedOp(OpDef):
    level: ClassVar[str] = "fused"


@register_op
class Embedding(FusedOp):
    """Token plus learned position embedding: out[b, s] = wte[ids[b, s]] + wpe[s] (positions start at 0).

        %h = embedding(%input_ids, %wte, %wpe) : (tensor<?batchx?seqxi64>, tensor<50257x768xf32>, tensor<2048x768xf32>) -> tensor<?batchx?seqx768xf32>
    """

    name = "embedding"
    operands = ("ids", "wte", "wpe?")

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        ids, wte = ctx.type(0), ctx.type(1)
        if ids.dtype not in ("i64", "i32") or wte.rank != 2:
            raise ctx.error(f"expects integer ids and a 2-D table, got {ids} and {wte}")
        if ctx.has(2):
            wpe = ctx.type(2)
            if wpe.rank != 2 or wpe.dtype != wte.dtype:
                raise ctx.error(f"position table {wpe} does not match token table {wte}")
            _same_dim(ctx, wpe.shape[1], wte.shape[1], "embedding widths differ")
        return [TensorType((*ids.shape, wte.shape[1]), wte.dtype)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        ids, wte, wpe = (list(inputs) + [None])[:3]
        out = np.take(wte, ids, axis=0)
        if wpe is not None:
            out += wpe[: ids.shape[-1]]
        return out

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        n = _numel(out_types[0])
        return Cost(flops=n if len(in_types) > 2 else 0, bytes=_bytes(in_types[:1]) + 2 * n * out_types[0].itemsize + _bytes(out_types))


@register_op
class LayerNorm(FusedOp):
    """Layer normalisation over the last axis: (x - mean) / sqrt(var + epsilon) * gamma + beta.

        %y = layer_norm(%x, %gamma, %beta) {epsilon = 1e-05} : (tensor<?batchx?seqx768xf32>, tensor<768xf32>, tensor<768xf32>) -> tensor<?batchx?seqx768xf32>
    """

    name = "layer_norm"
    operands = ("x", "gamma", "beta?")
    attributes = {"epsilon": Attr("float", 1e-5, "added to the variance", min=0.0)}

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x, g = ctx.type(0), ctx.type(1)
        if x.rank < 1 or g.shape != x.shape[-1:]:
            raise ctx.error(f"gamma {g} must be the last axis of {x}")
        if ctx.has(2) and ctx.type(2).shape != g.shape:
            raise ctx.error(f"beta {ctx.type(2)} must match gamma {g}")
        return [x]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x, g, b = (list(inputs) + [None])[:3]
        xf = x.astype(np.float32, copy=False)
        mean = xf.mean(axis=-1, keepdims=True)
        centered = xf - mean
        var = np.mean(centered * centered, axis=-1, keepdims=True)
        y = centered / np.sqrt(var + np.float32(attrs["epsilon"]))
        y *= g
        if b is not None:
            y += b
        return y.astype(x.dtype, copy=False)

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        return Cost(flops=8 * _numel(out_types[0]), bytes=_bytes(in_types) + _bytes(out_types))


@register_op
class Linear(FusedOp):
    """x @ W (+ bias) (then an activation). W is [K, N], or [N, K] with transpose_w (a tied LM head reads the
    embedding table in place).

        %y = linear(%x, %w, %b) {activation = "gelu"} : (tensor<?batchx?seqx768xf32>, tensor<768x3072xf32>, tensor<3072xf32>) -> tensor<?batchx?seqx3072xf32>
        %logits = linear(%h, %wte) {transpose_w = true} : (tensor<1x128x768xf32>, tensor<50257x768xf32>) -> tensor<1x128x50257xf32>
    """

    name = "linear"
    operands = ("x", "w", "bias?")
    attributes = {
        "activation": Attr("str", "none", "applied after the bias", choices=ACTIVATIONS),
        "transpose_w": Attr("bool", False, "W is stored [N, K]"),
    }

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        x, w = ctx.type(0), ctx.type(1)
        if w.rank != 2 or x.rank < 1:
            raise ctx.error(f"expects a 2-D weight, got {w}")
        k, n = (w.shape[1], w.shape[0]) if ctx.attrs["transpose_w"] else w.shape
        _same_dim(ctx, x.shape[-1], k, "contraction dims differ")
        if ctx.has(2) and ctx.type(2).shape != (n,):
            raise ctx.error(f"bias {ctx.type(2)} must be [{n}]")
        return [TensorType((*x.shape[:-1], n), x.dtype)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        x, w, b = (list(inputs) + [None])[:3]
        dtype = x.dtype
        if dtype != np.float32 and dtype.kind in "fV":  # halves: f32 products and sums (numpy has no f16 BLAS)
            x, w = x.astype(np.float32), w.astype(np.float32)
            b = None if b is None else b.astype(np.float32)
        y = np.matmul(x, w.T if attrs["transpose_w"] else w)
        if b is not None:
            y += b
        return apply_activation(y, attrs["activation"]).astype(dtype, copy=False)

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        out = _numel(out_types[0])
        k = in_types[0].shape[-1] if isinstance(in_types[0].shape[-1], int) else 0
        flops = 2 * out * k + (out if len(in_types) > 2 else 0)
        flops += GELU_FLOPS * out if attrs.get("activation", "none") != "none" else 0
        return Cost(flops=flops, bytes=_bytes(in_types) + _bytes(out_types))


@register_op
class Attention(FusedOp):
    """Multi-head self-attention on packed projections: q, k, v are [B, S, heads*head_dim] (or one [B, S,
    3*heads*head_dim] operand holding q|k|v); out = merge_heads(softmax(q k^T * scale + mask) v).

        %o = attention(%qkv) {heads = 12, head_dim = 64, scale = 0.125, mask = "causal"} : (tensor<?batchx?seqx2304xf32>) -> tensor<?batchx?seqx768xf32>
    """

    name = "attention"
    operands = ("qkv*",)
    attributes = {
        "heads": Attr("int", doc="number of heads", min=1),
        "head_dim": Attr("int", doc="width of one head", min=1),
        "scale": Attr("float", doc="multiplies q k^T"),
        "mask": Attr("str", "causal", "'causal' (lower triangular) or 'none'", choices=MASKS),
    }

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        n = len(ctx.types)
        if n not in (1, 3):
            raise ctx.error(f"takes one packed qkv operand or q, k, v; got {n} operands")
        width = ctx.attrs["heads"] * ctx.attrs["head_dim"]
        q = ctx.type(0)
        if q.rank != 3:
            raise ctx.error(f"expects [batch, seq, features] operands, got {q}")
        want = 3 * width if n == 1 else width
        _same_dim(ctx, q.shape[-1], want, "feature width does not match heads * head_dim")
        for i in range(1, n):
            if ctx.type(i) != q:
                raise ctx.error(f"q, k and v must have the same type, got {q} and {ctx.type(i)}")
        return [TensorType((q.shape[0], q.shape[1], width), q.dtype)]

    @classmethod
    def verify(cls, op: Operation) -> None:
        if op.attributes.get("scale", 1.0) <= 0:
            raise VerifyError("'attention': scale must be positive")

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        heads, hd = attrs["heads"], attrs["head_dim"]
        if len(inputs) == 1:
            q, k, v = np.split(inputs[0], 3, axis=-1)
        else:
            q, k, v = inputs
        b, s, _ = q.shape
        dtype = q.dtype

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(b, s, heads, hd).transpose(0, 2, 1, 3).astype(np.float32, copy=False)

        qh, kh, vh = split(q), split(k), split(v)
        scores = np.matmul(qh, kh.transpose(0, 1, 3, 2))
        scores *= np.float32(attrs["scale"])
        if attrs["mask"] == "causal":
            scores[..., np.triu(np.ones((s, s), dtype=bool), 1)] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        out = np.matmul(scores, vh)
        return out.transpose(0, 2, 1, 3).reshape(b, s, heads * hd).astype(dtype, copy=False)

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        b, s, _ = out_types[0].shape
        if not (isinstance(b, int) and isinstance(s, int)):
            return Cost(0, 0)
        heads, hd = attrs["heads"], attrs["head_dim"]
        pairs = b * heads * s * s
        flops = 4 * pairs * hd + 5 * pairs  # q k^T and p v, plus scale, mask, exp, sum and divide
        return Cost(flops=flops, bytes=_bytes(in_types) + _bytes(out_types))


@register_op
class Residual(FusedOp):
    """The residual add of a transformer block: x + y, same shapes (a placement boundary between blocks).

        %h1 = residual(%h0, %attn) : (tensor<?batchx?seqx768xf32>, tensor<?batchx?seqx768xf32>) -> tensor<?batchx?seqx768xf32>
    """

    name = "residual"
    operands = ("x", "y")

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        if ctx.type(0) != ctx.type(1):
            raise ctx.error(f"operands must have the same type, got {ctx.type(0)} and {ctx.type(1)}")
        return [ctx.type(0)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return np.add(inputs[0], inputs[1])

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        return Cost(flops=_numel(out_types[0]), bytes=_bytes(in_types) + _bytes(out_types))

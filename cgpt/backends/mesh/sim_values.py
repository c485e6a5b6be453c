"""The mesh's arithmetic: every mesh op computed the way its tiling spreads it over PEs, vectorised with numpy.

    outputs = run_tiled(module, {"input_ids": ids})      # {"logits": array}, as the wafer would compute them

What each kernel does (the layouts of kernels.py):
    linear     PE (r, c) holds W[r*kb:(r+1)*kb, c*nb:(c+1)*nb]; row block r forms the partial x[:, Kr] @ W[Kr, :]
               for all its column blocks at once; partials are summed in f32 in the mesh's order: a chain
               r = 0, 1, .., h-1 (a tree, PE i adding children i+1, i+2, i+4, .., for one-token GEMVs); then bias
               and activation in f32, stored in the program dtype
    attention  heads over column blocks, keys over row blocks: each key block's partial softmax (running max,
               sum and weighted values, flash-attention style, f32) is merged in row order
    layer_norm features over column blocks: per-block sums of x and of (x - mean)^2, chained along the row
    residual, embedding  elementwise in f32
When the dtype is f16 the stored operands are f16 values; products and sums are f32 (f16 x f16 is exact in f32).
A linear's column blocks are independent, so a few threads share them (numpy releases the GIL); the order of
every sum is fixed, so the result does not depend on the thread count.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from cgpt.backends.reference.interpreter import Interpreter, _Step
from cgpt.ir.core import Module, Operation
from cgpt.ir.diagnostics import RunError
from cgpt.ir.ops.fused import apply_activation

F32 = np.float32
PARTIAL_BYTES = 4 << 20  # bound on one chunk of row-block partials held at once (per worker)
WORKERS = max(1, min(4, os.cpu_count() or 1))
Kernel = Callable[[list[np.ndarray | None], dict[str, Any]], np.ndarray]


def linear_reduction(tokens: int) -> str:
    """How a linear's row blocks combine their partial sums: a chain for a GEMM, a tree for a one-token GEMV."""
    return "tree" if tokens == 1 else "chain"


def chain_sum(parts: np.ndarray) -> np.ndarray:
    """parts[0] + parts[1] + ... + parts[n-1], left to right, in parts' dtype.

    numpy reduces a C-contiguous array over its outermost axis one row at a time (out += parts[i]); pairwise
    summation only applies along the innermost axis, hence the contiguous copy of any other layout.
    """
    return np.add.reduce(np.ascontiguousarray(parts), axis=0)


def tree_sum(parts: np.ndarray) -> np.ndarray:
    """The binomial-tree sum collectives.tree_reduce_cycles costs: PE i adds children i+1, i+2, i+4, .. in turn."""
    parts = parts.copy()
    n, step = parts.shape[0], 1
    while step < n:
        right = parts[step:n:2 * step]
        parts[0:n - step:2 * step][: len(right)] += right
        step *= 2
    return parts[0]


def _blocks(size: int, parts: int) -> tuple[int, int]:
    """(block, nonempty blocks) of `size` split over `parts` as kernels.py does: ceil(size / parts) each."""
    block = -(-size // parts)
    return block, -(-size // block)


def tiled_linear(inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    x, w, bias = (list(inputs) + [None])[:3]
    assert x is not None and w is not None
    wn = w if attrs["transpose_w"] else w.T  # [N, K] view either way
    n, k = wn.shape
    kb, rows = _blocks(k, attrs["tiling"].h)
    lead = x.shape[:-1]
    m = int(np.prod(lead, dtype=np.int64))
    depth = max(kb, 2)  # BLAS is slow on one-deep products; a zero second term leaves every partial exact
    xt = np.zeros((rows * kb, m), dtype=F32)  # zero rows pad the last row block: they add exact zeros
    xt[:k] = x.reshape(m, k).T
    xk = np.zeros((rows, depth, m), dtype=F32)  # [row block, its slice of K, token]
    xk[:, :kb] = xt.reshape(rows, kb, m)
    reduce = tree_sum if linear_reduction(x.shape[-2] if x.ndim >= 2 else 1) == "tree" else chain_sum
    out = np.empty((n, m), dtype=F32)
    cols = int(max(16, min(n, PARTIAL_BYTES // (4 * rows * max(m, 1)))))
    in_place = wn.dtype == F32 and k == rows * kb and kb == depth  # weights BLAS can read where they are

    def columns(span: range) -> None:
        flat = np.zeros((cols, rows * kb), dtype=F32)
        deep = np.zeros((cols, rows, depth), dtype=F32) if depth != kb else None
        for c0 in span:
            c1 = min(n, c0 + cols)
            if in_place:
                w3 = wn[c0:c1].reshape(c1 - c0, rows, kb)
            else:
                flat[: c1 - c0, :k] = wn[c0:c1]
                w3 = flat[: c1 - c0].reshape(c1 - c0, rows, kb)
                if deep is not None:
                    deep[: c1 - c0, :, :kb] = w3
                    w3 = deep[: c1 - c0]
            # [row block, output column, token] partials, then summed over the row blocks in the mesh's order
            out[c0:c1] = reduce(np.matmul(w3.transpose(1, 0, 2), xk))

    starts = range(0, n, cols)
    workers = min(WORKERS, len(starts))
    with ThreadPoolExecutor(workers) as pool:  # column blocks are independent; numpy releases the GIL
        list(pool.map(columns, [starts[i::workers] for i in range(workers)]))
    if bias is not None:
        out += bias.astype(F32, copy=False)[:, None]
    y = apply_activation(np.ascontiguousarray(out.T), attrs["activation"])
    return y.astype(x.dtype, copy=False).reshape(*lead, n)


def tiled_attention(inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    heads, hd = attrs["heads"], attrs["head_dim"]
    q, k, v = np.split(inputs[0], 3, axis=-1) if len(inputs) == 1 else inputs  # type: ignore[misc]
    b, s, _ = q.shape
    dtype = q.dtype

    def split(t: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(t.reshape(b, s, heads, hd).transpose(0, 2, 1, 3), dtype=F32)

    qh, kh, vh = split(q), split(k), split(v)
    sb, blocks = _blocks(s, attrs["tiling"].h)
    scale = F32(attrs["scale"])
    causal = attrs["mask"] == "causal"
    chunk = max(1, PARTIAL_BYTES // (4 * b * heads * s * (2 * sb + 2 * hd + 4)))  # key blocks per batch of partials
    run_max = run_sum = run_out = None
    for r0 in range(0, blocks, chunk):  # key blocks in row order, as the partials travel down the column
        blk_max, blk_sum, blk_out = _key_block_partials(qh, kh, vh, r0, min(blocks, r0 + chunk), sb, scale, causal)
        if run_max is None:  # block 0 holds key 0, which every query sees: its max is finite
            run_max, run_sum, run_out = blk_max[0], blk_sum[0].copy(), blk_out[0].copy()
            blk_max, blk_sum, blk_out = blk_max[1:], blk_sum[1:], blk_out[1:]
        # The running max is a cumulative max, so every rescale factor is known up front; only the f32
        # multiply-adds of the merge must happen one block after another.
        maxes = np.maximum.accumulate(np.concatenate([run_max[None], blk_max]), axis=0)
        keep = np.exp(maxes[:-1] - maxes[1:])
        take = np.exp(blk_max - maxes[1:])  # 0 for a block the mask hides entirely
        blk_out *= take[:, None]
        blk_sum *= take
        for r in range(len(blk_max)):
            run_out *= keep[r]
            run_out += blk_out[r]
            run_sum *= keep[r]
            run_sum += blk_sum[r]
        run_max = maxes[-1]
    assert run_out is not None and run_sum is not None
    out = run_out / run_sum  # [head_dim, batch, head, query]
    return out.transpose(1, 3, 2, 0).reshape(b, s, heads * hd).astype(dtype, copy=False)


def _key_block_partials(qh: np.ndarray, kh: np.ndarray, vh: np.ndarray, r0: int, r1: int, sb: int, scale: np.float32,
                        causal: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Key blocks r0..r1-1's flash partials for every query: max and sum [n, B, H, S], out [n, hd, B, H, S]
    (queries innermost, so the merge rescales contiguous rows)."""
    b, h, s, hd = qh.shape
    lo, hi = r0 * sb, min(s, r1 * sb)
    n = r1 - r0
    keys = np.zeros((b, h, n * sb, hd), dtype=F32)  # keys past the end pad the last block; masked below
    keys[:, :, : hi - lo] = kh[:, :, lo:hi]
    values = np.zeros_like(keys)
    values[:, :, : hi - lo] = vh[:, :, lo:hi]
    scores = np.matmul(keys, qh.transpose(0, 1, 3, 2))  # [B, H, key, query]
    scores *= scale
    key = np.arange(lo, lo + n * sb)[:, None]
    hidden = (key >= hi) | (key > np.arange(s)[None, :]) if causal else np.broadcast_to(key >= hi, (n * sb, s))
    scores[:, :, hidden] = -np.inf
    scores = np.ascontiguousarray(scores.reshape(b, h, n, sb, s).transpose(2, 0, 1, 3, 4))  # [block, B, H, key, q]
    blk_max = scores.max(axis=3)
    scores -= np.where(np.isfinite(blk_max), blk_max, F32(0))[:, :, :, None]
    p = np.exp(scores, out=scores)
    v5 = values.reshape(b, h, n, sb, hd).transpose(2, 4, 0, 1, 3)  # [block, hd, B, H, key]
    if sb == 1:  # a one-key block's output is its value row scaled by p
        out = p[:, None, :, :, 0, :] * v5
    else:
        out = np.einsum("nbhkq,ndbhk->ndbhq", p, v5)
    return blk_max, p.sum(axis=3), out


def tiled_layer_norm(inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    x, g, beta = (list(inputs) + [None])[:3]
    assert x is not None and g is not None
    d = x.shape[-1]
    db, cols = _blocks(d, attrs["tiling"].w)
    xf = np.zeros((*x.shape[:-1], cols * db), dtype=F32)
    xf[..., :d] = x
    blocks = xf.reshape(*x.shape[:-1], cols, db)
    mean = chain_sum(np.moveaxis(blocks.sum(axis=-1), -1, 0)) / F32(d)
    centered = xf[..., :d] - mean[..., None]
    sq = np.zeros_like(xf)
    sq[..., :d] = centered * centered
    var = chain_sum(np.moveaxis(sq.reshape(blocks.shape).sum(axis=-1), -1, 0)) / F32(d)
    y = centered / np.sqrt(var + F32(attrs["epsilon"]))[..., None]
    y *= g.astype(F32, copy=False)
    if beta is not None:
        y += beta.astype(F32, copy=False)
    return y.astype(x.dtype, copy=False)


def tiled_residual(inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    x, y = inputs[0], inputs[1]
    assert x is not None and y is not None
    return (x.astype(F32) + y.astype(F32)).astype(x.dtype, copy=False)


def tiled_embedding(inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    ids, wte, wpe = (list(inputs) + [None])[:3]
    assert ids is not None and wte is not None
    out = np.take(wte, ids, axis=0).astype(F32)
    if wpe is not None:
        out += wpe[: ids.shape[-1]].astype(F32, copy=False)
    return out.astype(wte.dtype, copy=False)


TILED_KERNELS: dict[str, Kernel] = {
    "mesh.linear": tiled_linear,
    "mesh.attention": tiled_attention,
    "mesh.layer_norm": tiled_layer_norm,
    "mesh.residual": tiled_residual,
    "mesh.embedding": tiled_embedding,
}


class TiledInterpreter(Interpreter):
    """The reference interpreter's plan (slots, last uses, input checks) with each mesh op's tiled kernel."""

    def _step(self, op: Operation, operands: list[int], results: list[int], free: list[int]) -> _Step:
        step = super()._step(op, operands, results, free)
        kernel = TILED_KERNELS.get(op.name)
        if kernel is None:
            return step
        if op.attributes.get("tiling") is None:
            raise RunError(f"'{op.name}' has no tiling: the program is not placed (run mesh-place)",
                           where=f"loc({op.loc})")
        step.kernel = kernel
        return step


def run_tiled(module: Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the module's main function with every mesh op computed as its tiling distributes it."""
    return TiledInterpreter(module).run(inputs)

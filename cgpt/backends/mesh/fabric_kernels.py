"""Kernel schedules as fabric programs: the same collectives and GEMMs `collectives.py` prices.

Each builder places real values in PE memory and returns a `FabricKernel`: the program, and `read`, which
pulls the kernel's answer out of a run so it can be checked against numpy.

    fab = Fabric(8, 1)
    k = chain_reduce(fab, np.ones((8, 16)))
    r = fab.run(k.program)
    r.cycles, k.read(r)            # (8-1)*(2*2+2) + 16-1 = 57 cycles, sixteen 8.0s

Every kernel starts at `origin` (x, y) and reduces toward, or broadcasts from, its lowest-x PE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cgpt.backends.mesh.fabric import (
    ComputeGroup,
    Fabric,
    FabricResult,
    FlowGroup,
    Program,
    multicast_xy,
)
from cgpt.ir.diagnostics import CompileError

Point = tuple[int, int]


@dataclass(frozen=True)
class FabricKernel:
    """A program and how to read its answer from a run."""

    program: Program
    read: Callable[[FabricResult], np.ndarray]


def _zeros(fab: Fabric, words: int) -> np.ndarray:
    return np.zeros((fab.h, fab.w, max(words, 1)))


def _row(origin: Point, xs: np.ndarray) -> np.ndarray:
    """(x, y) of the PEs at offsets `xs` along the origin's row."""
    return np.stack([origin[0] + xs, np.full(len(xs), origin[1])], axis=1)


def _check_fits(fab: Fabric, origin: Point, w: int, h: int, what: str) -> None:
    if origin[0] < 0 or origin[1] < 0 or origin[0] + w > fab.w or origin[1] + h > fab.h:
        raise CompileError(f"{what} needs {w} x {h} PEs at {origin}; the fabric is {fab.w} x {fab.h}")


def transfers(fab: Fabric, moves: Sequence[tuple[Point, Point, np.ndarray]]) -> FabricKernel:
    """Point-to-point transfers along XY routes, all at once; `read` concatenates what each delivered.

    Each move is (src, dst, values); moves that share links (ramps included) contend for them.
    """
    buffers, flows = {}, []
    for i, (src, dst, values) in enumerate(moves):
        v = np.asarray(values, dtype=np.float64).ravel()
        x = _zeros(fab, len(v))
        x[src[1], src[0], : len(v)] = v
        buffers[f"x{i}"], buffers[f"y{i}"] = x, _zeros(fab, len(v))
        tree = multicast_xy([(dst[0] - src[0], dst[1] - src[1])])
        flows.append(FlowGroup(f"t{i}", np.array([src]), tree, len(v), f"x{i}", f"y{i}"))
    lens = [np.size(m[2]) for m in moves]

    def read(r: FabricResult) -> np.ndarray:
        parts = [r.buffers[f"y{i}"][d[1], d[0], : lens[i]] for i, (_, d, _) in enumerate(moves)]
        return np.concatenate(parts) if parts else np.zeros(0)

    return FabricKernel(Program(buffers, tuple(flows)), read)


def transfer(fab: Fabric, src: Point, dst: Point, values: np.ndarray) -> FabricKernel:
    """One point-to-point transfer of `values` from `src` to `dst` along its XY route."""
    return transfers(fab, [(src, dst, values)])


def region_transfer(fab: Fabric, src: Point, dst: Point, values: np.ndarray) -> FabricKernel:
    """Every PE of an h x w region at `src` sends its `values[y, x]` ((h, w, L)) to the same spot at `dst`."""
    h, w, n = values.shape
    _check_fits(fab, src, w, h, "region transfer source")
    _check_fits(fab, dst, w, h, "region transfer destination")
    x = _zeros(fab, n)
    x[src[1] : src[1] + h, src[0] : src[0] + w] = values
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    pes = np.stack([src[0] + gx.ravel(), src[1] + gy.ravel()], axis=1)
    tree = multicast_xy([(dst[0] - src[0], dst[1] - src[1])])
    flow = FlowGroup("region", pes, tree, n, "x", "y")

    def read(r: FabricResult) -> np.ndarray:
        return r.buffers["y"][dst[1] : dst[1] + h, dst[0] : dst[0] + w, :n]

    return FabricKernel(Program({"x": x, "y": _zeros(fab, n)}, (flow,)), read)


def row_broadcast(fab: Fabric, values: np.ndarray, width: int, origin: Point = (0, 0)) -> FabricKernel:
    """The origin PE multicasts `values` east along its row to `width` - 1 PEs; `read` is (width, L)."""
    return broadcast_2d(fab, values, width, 1, origin)


def broadcast_2d(fab: Fabric, values: np.ndarray, w: int, h: int, origin: Point = (0, 0)) -> FabricKernel:
    """The origin PE multicasts `values` to a w x h block: east along its row, south down every column."""
    _check_fits(fab, origin, w, h, "broadcast")
    v = np.asarray(values, dtype=np.float64).ravel()
    x = _zeros(fab, len(v))
    x[origin[1], origin[0], : len(v)] = v
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    targets = np.stack([gx.ravel(), gy.ravel()], axis=1)[1:]
    flows = (
        (FlowGroup("bcast", np.array([origin]), multicast_xy(targets), len(v), "x", "x"),)
        if len(targets)
        else ()
    )

    def read(r: FabricResult) -> np.ndarray:
        out = r.buffers["x"][origin[1] : origin[1] + h, origin[0] : origin[0] + w, : len(v)]
        return out[0] if h == 1 else out

    return FabricKernel(Program({"x": x}, flows), read)


def _reduce_flows(
    origins: np.ndarray, p: int, n: int, algorithm: str, buf: str, after: tuple[str, ...] = ()
) -> list[FlowGroup]:
    """Reduce along each row starting at `origins` ((r, 2) of x, y) toward its first PE.

    A chain sends PE i -> i-1; a binomial tree sends PE i -> i - lowbit(i). Every PE accumulates what
    arrives into `buf` and streams each summed wavelet on once all its children's have landed.
    """
    if algorithm not in ("chain", "tree"):
        raise CompileError(f"unknown reduce algorithm '{algorithm}' (chain or tree)")
    i = np.arange(1, p)
    dist = np.ones_like(i) if algorithm == "chain" else i & -i
    groups = []
    for d in np.unique(dist):
        xs = np.add.outer(origins[:, 0], i[dist == d]).ravel()
        ys = np.repeat(origins[:, 1], int(np.count_nonzero(dist == d)))
        groups.append(
            FlowGroup(
                "reduce",
                np.stack([xs, ys], axis=1),
                multicast_xy([(-int(d), 0)]),
                n,
                buf,
                buf,
                accumulate=True,
                after=after,
                stream_after=("reduce",),
            )
        )
    return groups


def _row_bcast(origins: np.ndarray, p: int, n: int, buf: str, after: tuple[str, ...]) -> list[FlowGroup]:
    """Each origin multicasts `buf` east to the other p - 1 PEs of its row."""
    if p < 2:
        return []
    tree = multicast_xy(np.stack([np.arange(1, p), np.zeros(p - 1, np.int64)], axis=1))
    return [FlowGroup("bcast", origins, tree, n, buf, buf, after=after)]


def _reduce(fab: Fabric, vectors: np.ndarray, origin: Point, algorithm: str, allreduce: bool) -> FabricKernel:
    p, n = vectors.shape
    _check_fits(fab, origin, p, 1, f"{algorithm} reduce")
    x = _zeros(fab, n)
    x[origin[1], origin[0] : origin[0] + p, :n] = vectors
    root = np.array([origin])
    flows = _reduce_flows(root, p, n, algorithm, "x")
    if allreduce:
        flows += _row_bcast(root, p, n, "x", after=("reduce",))

    def read(r: FabricResult) -> np.ndarray:
        xs = r.buffers["x"][origin[1], origin[0] : origin[0] + p, :n]
        return xs if allreduce else xs[0]

    return FabricKernel(Program({"x": x}, tuple(flows)), read)


def chain_reduce(fab: Fabric, vectors: np.ndarray, origin: Point = (0, 0)) -> FabricKernel:
    """Pipelined chain reduce of `vectors` ((p, L), one per PE) to the origin; each PE adds as it forwards."""
    return _reduce(fab, vectors, origin, "chain", allreduce=False)


def tree_reduce(fab: Fabric, vectors: np.ndarray, origin: Point = (0, 0)) -> FabricKernel:
    """Binomial-tree reduce: PE i streams its partial sum to PE i - lowbit(i), all levels pipelined."""
    return _reduce(fab, vectors, origin, "tree", allreduce=False)


def allreduce(
    fab: Fabric, vectors: np.ndarray, algorithm: str = "tree", origin: Point = (0, 0)
) -> FabricKernel:
    """Reduce to the origin, then multicast the sum back along the row; `read` is (p, L), one row per PE."""
    return _reduce(fab, vectors, origin, algorithm, allreduce=True)


def mesh_permutation(p: int, interleave: bool) -> np.ndarray:
    """Physical position of each logical index on a ring of p: identity, or MeshGEMM's interleave.

    Interleaving puts logical k at 2k for the first half and 2(p-1-k)+1 for the rest, so ring neighbours,
    the wrap-around pair included, are at most two hops apart (WaferLLM, OSDI'25).
    """
    k = np.arange(p)
    return np.where(k < (p + 1) // 2, 2 * k, 2 * (p - 1 - k) + 1) if interleave else k


def cannon_gemm(
    fab: Fabric, a: np.ndarray, b: np.ndarray, p: int, interleave: bool = False, origin: Point = (0, 0)
) -> FabricKernel:
    """C = A @ B on a p x p block by Cannon's algorithm; `interleave` maps it as MeshGEMM does.

    Operands are loaded pre-skewed (logical PE (i, j) starts with A(i, i+j) and B(i+j, j)), as a producer
    or the weight loader lays them out; then p steps each multiply local blocks while A shifts one logical
    PE west and B one north. A PE forwards a block once it has all of it, and computes a step once it has
    both blocks and finished the previous step; no barrier spans PEs.
    """
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2 or m % p or k % p or n % p:
        raise CompileError(
            f"Cannon GEMM needs ({m} x {k}) @ ({k2} x {n}) with every dimension divisible by {p}"
        )
    _check_fits(fab, origin, p, p, "Cannon GEMM")
    mb, kb, nb = m // p, k // p, n // p
    perm = mesh_permutation(p, interleave)
    li, lj = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    px, py = origin[0] + perm[lj], origin[1] + perm[li]
    skew = (li + lj) % p
    ablk = a.reshape(p, mb, p, kb).transpose(0, 2, 1, 3)[li, skew].reshape(p, p, -1)
    bblk = b.reshape(p, kb, p, nb).transpose(0, 2, 1, 3)[skew, lj].reshape(p, p, -1)
    buffers = {"C": _zeros(fab, mb * nb)}
    for s in range(p):
        buffers[f"A{s}"], buffers[f"B{s}"] = _zeros(fab, mb * kb), _zeros(fab, kb * nb)
    buffers["A0"][py, px], buffers["B0"][py, px] = ablk, bblk
    pes = np.stack([px.ravel(), py.ravel()], axis=1)
    dxa = (perm[(lj - 1) % p] - perm[lj]).ravel()
    dyb = (perm[(li - 1) % p] - perm[li]).ravel()
    shapes = [(d, multicast_xy([(int(d), 0)])) for d in np.unique(dxa)]
    shapes_b = [(d, multicast_xy([(0, int(d))])) for d in np.unique(dyb)]
    flows, computes = [], []
    for s in range(p):
        if s + 1 < p:
            flows += [
                FlowGroup(f"A{s + 1}", pes[dxa == d], t, mb * kb, f"A{s}", f"A{s + 1}", after=(f"A{s}",))
                for d, t in shapes
            ]
            flows += [
                FlowGroup(f"B{s + 1}", pes[dyb == d], t, kb * nb, f"B{s}", f"B{s + 1}", after=(f"B{s}",))
                for d, t in shapes_b
            ]
        computes.append(
            ComputeGroup(
                f"mm{s}",
                pes,
                gemm_issue_cycles(mb, kb, nb, fab.params.fmac_lanes),
                _block_matmul(f"A{s}", f"B{s}", mb, kb, nb),
                after=(f"A{s}", f"B{s}", f"mm{s - 1}"),
            )
        )

    def read(r: FabricResult) -> np.ndarray:
        return r.buffers["C"][py, px, : mb * nb].reshape(p, p, mb, nb).transpose(0, 2, 1, 3).reshape(m, n)

    return FabricKernel(Program(buffers, tuple(flows), tuple(computes)), read)


def gemm_issue_cycles(mb: int, kb: int, nb: int, lanes: int) -> int:
    """FMAC issue count of a local (mb x kb) @ (kb x nb): mb*kb vector FMACs of nb elements each."""
    return mb * kb * -(-nb // lanes)


def _block_matmul(a: str, b: str, mb: int, kb: int, nb: int) -> Callable:
    def fn(buf, ys, xs):  # noqa: ANN001, ANN202
        prod = np.matmul(
            buf[a][ys, xs, : mb * kb].reshape(-1, mb, kb), buf[b][ys, xs, : kb * nb].reshape(-1, kb, nb)
        )
        buf["C"][ys, xs, : mb * nb] += prod.reshape(len(ys), -1)

    return fn


def gemv(fab: Fabric, a: np.ndarray, x: np.ndarray, p: int, origin: Point = (0, 0)) -> FabricKernel:
    """y = A @ x on a p x p block (MeshGEMV): local products, then a tree all-reduce along each row.

    PE (j, i) holds A's block (i, j) and x's block j; after the run every PE of row i holds y's block i.
    """
    m, k = a.shape
    if k != len(x) or m % p or k % p:
        raise CompileError(f"GEMV needs ({m} x {k}) @ ({len(x)},) with both dimensions divisible by {p}")
    _check_fits(fab, origin, p, p, "GEMV")
    mb, kb = m // p, k // p
    gi, gj = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    sl = np.s_[origin[1] : origin[1] + p, origin[0] : origin[0] + p]
    buffers = {"A": _zeros(fab, mb * kb), "x": _zeros(fab, kb), "y": _zeros(fab, mb)}
    buffers["A"][sl] = a.reshape(p, mb, p, kb).transpose(0, 2, 1, 3).reshape(p, p, -1)
    buffers["x"][sl] = x.reshape(p, kb)[gj]
    pes = np.stack([origin[0] + gj.ravel(), origin[1] + gi.ravel()], axis=1)

    def local(buf, ys, xs):  # noqa: ANN001, ANN202
        buf["y"][ys, xs, :mb] += np.einsum(
            "nik,nk->ni", buf["A"][ys, xs, : mb * kb].reshape(-1, mb, kb), buf["x"][ys, xs, :kb]
        )

    compute = ComputeGroup("mv", pes, kb * -(-mb // fab.params.fmac_lanes), local)
    roots = np.stack([np.full(p, origin[0]), origin[1] + np.arange(p)], axis=1)
    flows = _reduce_flows(roots, p, mb, "tree", "y", after=("mv",)) + _row_bcast(
        roots, p, mb, "y", ("reduce",)
    )

    def read(r: FabricResult) -> np.ndarray:
        return r.buffers["y"][sl][:, :, :mb].transpose(1, 0, 2).reshape(p, m)

    return FabricKernel(Program(buffers, tuple(flows), (compute,)), read)

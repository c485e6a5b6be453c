"""Cross-validation of the closed forms (`collectives.py`) against the cycle-level fabric (`fabric.py`).

Each point runs one kernel in both models on a p x p fabric, checks the values the fabric moved against
numpy, and reports the relative error of the closed form:

    rows = sweep([SweepPoint("chain_reduce", 8, 256)])
    rows[0].rel_error                      # 0.0: the chain's closed form is exact
    print(sweep_table(rows))               # the markdown table `make bench` puts in RESULTS.md
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cgpt.backends.mesh import collectives as cc
from cgpt.backends.mesh import fabric_kernels as fk
from cgpt.backends.mesh.fabric import Fabric
from cgpt.backends.mesh.fabric_params import FabricParams
from cgpt.ir.diagnostics import CompileError

KERNELS = (
    "transfer",
    "shared_transfers",
    "row_broadcast",
    "broadcast_2d",
    "region_transfer",
    "region_diagonal",
    "edge_transfer",
    "chain_reduce",
    "tree_reduce",
    "allreduce",
    "cannon_gemm",
    "meshgemm",
    "gemv",
)
_MATRIX = ("cannon_gemm", "meshgemm", "gemv")


@dataclass(frozen=True)
class SweepPoint:
    """A kernel on a mesh x mesh fabric; `size` is bytes per PE for collectives, M = K = N for GEMM/GEMV."""

    kernel: str
    mesh: int
    size: int


@dataclass(frozen=True)
class SweepRow:
    """Both models' cycles for one point, the closed form's relative error, and whether values matched."""

    kernel: str
    mesh: str
    size: int
    analytic_cycles: int
    cycle_model_cycles: int
    rel_error: float
    values_match: bool


def _collective(
    point: SweepPoint, fab: Fabric, rng: np.random.Generator
) -> tuple[fk.FabricKernel, np.ndarray, int]:
    """(kernel, expected values, analytic cycles) for the data-movement kernels.

    shared_transfers: (0,0) -> (p-1,0) and (1,0) -> (p-1,p-1), sharing p-2 row links.
    region_transfer: the top-left quarter block moves p/2 east (side-by-side regions).
    region_diagonal: the same block moves to the opposite quarter (two bottlenecks in series).
    edge_transfer: the left column's top half moves to the right column's bottom half (a producer edge).
    """
    p, prm = point.mesh, fab.params
    n = max(1, point.size // 4)
    nb = 4 * n
    vec, vec2 = rng.standard_normal(n), rng.standard_normal(n)
    rows = rng.standard_normal((p, n))
    q = max(1, p // 2)
    block, edge = rng.standard_normal((q, q, n)), rng.standard_normal((q, 1, n))
    pair = [((0, 0), (p - 1, 0), vec), ((1, 0), (p - 1, p - 1), vec2)]
    cases: dict[str, Callable[[], tuple[fk.FabricKernel, np.ndarray, int]]] = {
        "transfer": lambda: (
            fk.transfer(fab, (0, 0), (p - 1, p - 1), vec),
            vec,
            cc.transfer_cycles(nb, 2 * (p - 1), prm),
        ),
        "shared_transfers": lambda: (
            fk.transfers(fab, pair),
            np.concatenate([vec, vec2]),
            cc.transfers_cycles([(nb, cc.xy_path_links(a, b)) for a, b, _ in pair], prm),
        ),
        "row_broadcast": lambda: (
            fk.row_broadcast(fab, vec, p),
            np.broadcast_to(vec, (p, n)),
            cc.row_broadcast_cycles(nb, p, prm),
        ),
        "broadcast_2d": lambda: (
            fk.broadcast_2d(fab, vec, p, p),
            np.broadcast_to(vec, (p, p, n)),
            cc.broadcast_2d_cycles(nb, p, p, prm),
        ),
        "region_transfer": lambda: (
            fk.region_transfer(fab, (0, 0), (p - q, 0), block),
            block,
            cc.region_transfer_cycles(nb, q, q, p - q, 0, prm),
        ),
        "region_diagonal": lambda: (
            fk.region_transfer(fab, (0, 0), (p - q, p - q), block),
            block,
            cc.region_transfer_cycles(nb, q, q, p - q, p - q, prm),
        ),
        "edge_transfer": lambda: (
            fk.region_transfer(fab, (0, 0), (p - 1, p - q), edge),
            edge,
            cc.region_transfer_cycles(nb, 1, q, p - 1, p - q, prm),
        ),
        "chain_reduce": lambda: (fk.chain_reduce(fab, rows), rows.sum(0), cc.chain_reduce_cycles(nb, p, prm)),
        "tree_reduce": lambda: (fk.tree_reduce(fab, rows), rows.sum(0), cc.tree_reduce_cycles(nb, p, prm)),
        "allreduce": lambda: (
            fk.allreduce(fab, rows, "tree"),
            np.broadcast_to(rows.sum(0), (p, n)),
            cc.allreduce_cycles(nb, p, "tree", prm),
        ),
    }
    return cases[point.kernel]()


def _matrix(
    point: SweepPoint, fab: Fabric, rng: np.random.Generator
) -> tuple[fk.FabricKernel, np.ndarray, int]:
    """(kernel, expected values, analytic cycles) for GEMM and GEMV with M = K = N = size."""
    p, s, prm = point.mesh, point.size, fab.params
    a, b, x = rng.standard_normal((s, s)), rng.standard_normal((s, s)), rng.standard_normal(s)
    if point.kernel == "gemv":
        return fk.gemv(fab, a, x, p), np.broadcast_to(a @ x, (p, s)), cc.gemv_cycles(s, s, p, params=prm)
    mesh = point.kernel == "meshgemm"
    cost = cc.meshgemm_cycles if mesh else cc.cannon_gemm_cycles
    return fk.cannon_gemm(fab, a, b, p, interleave=mesh), a @ b, cost(s, s, s, p, params=prm)


def sweep(points: Sequence[SweepPoint], params: FabricParams | None = None, seed: int = 0) -> list[SweepRow]:
    """Run every point in both models; rows keep the order of `points`."""
    params = params or FabricParams()
    rng = np.random.default_rng(seed)
    rows = []
    for point in points:
        if point.kernel not in KERNELS:
            raise CompileError(f"unknown sweep kernel '{point.kernel}'; known: {', '.join(KERNELS)}")
        fab = Fabric(point.mesh, point.mesh, params)
        build = _matrix if point.kernel in _MATRIX else _collective
        kernel, expected, analytic = build(point, fab, rng)
        result = fab.run(kernel.program)
        got = kernel.read(result)
        cycles = result.cycles
        analytic = int(analytic)
        rows.append(
            SweepRow(
                kernel=point.kernel,
                mesh=f"{point.mesh}x{point.mesh}",
                size=point.size,
                analytic_cycles=analytic,
                cycle_model_cycles=cycles,
                rel_error=abs(analytic - cycles) / max(cycles, 1),
                values_match=bool(
                    got.shape == expected.shape and np.allclose(got, expected, rtol=1e-9, atol=1e-9)
                ),
            )
        )
    return rows


def small_points() -> list[SweepPoint]:
    """The test suite's sweep: every kernel on 4x4 and 8x8, a small and a large size each (seconds)."""
    moves = [k for k in KERNELS if k not in _MATRIX]
    pts = [SweepPoint(k, m, s) for k in moves for m in (4, 8) for s in (16, 256)]
    return pts + [SweepPoint(k, m, s) for k in _MATRIX for m in (4, 8) for s in (2 * m, 8 * m)]


def full_points() -> list[SweepPoint]:
    """`make bench`'s sweep: meshes 4x4 to 32x32, sizes from one wavelet to 8 KiB, blocks 1x1 to 8x8."""
    meshes = (4, 8, 16, 32)
    moves = [k for k in KERNELS if k not in _MATRIX]
    pts = [SweepPoint(k, m, s) for k in moves for m in meshes for s in (4, 64, 1024, 8192)]
    return pts + [SweepPoint(k, m, s) for k in _MATRIX for m in meshes for s in (m, 2 * m, 4 * m, 8 * m)]


def sweep_table(rows: Sequence[SweepRow]) -> str:
    """Markdown: one line per point, then the largest error per kernel."""
    lines = [
        "| kernel | mesh | size | analytic | cycle model | error | values |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.kernel} | {r.mesh} | {r.size} | {r.analytic_cycles} | {r.cycle_model_cycles} | "
        f"{100 * r.rel_error:.1f}% | {'ok' if r.values_match else 'MISMATCH'} |"
        for r in rows
    ]
    lines += ["", "| kernel | points | max error |", "|---|---|---|"]
    for k in dict.fromkeys(r.kernel for r in rows):
        errs = [r.rel_error for r in rows if r.kernel == k]
        lines.append(f"| {k} | {len(errs)} | {100 * max(errs):.1f}% |")
    return "\n".join(lines)

"""Cycle-level model of the mesh fabric: colored routes, bounded router queues, ramps, and PE compute.

It is the referee for the closed forms in `collectives.py`: it moves real values wavelet by wavelet, so a
kernel built on it is checked against numpy as well as timed.

The machine it models:
- every PE has a router with five ports (ramp, north, south, east, west); each directed link, the ramps
  included, carries one wavelet per cycle; a router-to-router hop takes `hop_latency_cycles` cycles and a ramp
  `ramp_latency_cycles` cycles, each way;
- a flow is one color's static route: a multicast tree of routers fed by the source PE's ramp, each router
  forwarding every wavelet to all of its outputs at once (other routers, its own PE's ramp);
- each router holds a queue of `queue_depth` wavelets per color and input port; a wavelet leaves only when
  every output queue has a credit (in-flight wavelets count against it), so a full queue back-pressures;
- links shared by colors are granted round-robin over flows, per output link, one wavelet per cycle; a
  multicast wavelet moves only when it wins all of its output links in the same cycle;
- a PE acts on an arriving wavelet (add it, forward it) one cycle after it lands, which is the "+1" of
  HPDC'24's (2*T_R + 1) per level; a PE's sends and receives run beside its compute (CSL microthreads);
- compute is a duration per PE (the kernel builder's FMAC issue count), ordered by dependencies.

Timing convention: the first wavelet enters its source ramp at cycle 0; `cycles` is the cycle at which the
last effect lands (last wavelet in memory, one cycle later for a wavelet that is accumulated). So a single
transfer of W wavelets over h hops takes h*hop_latency_cycles + 2*ramp_latency_cycles + W - 1 cycles.

Dependencies are local to a PE, as on the machine: a flow or compute names the groups (`after`) whose
deliveries or computes at *its own PE* must be complete before it starts, and the flows (`stream_after`)
whose wavelet j must have landed at its PE before it sends its own wavelet j (reduce-at-PE: the incoming
wavelet is accumulated into the buffer the flow sends from).

Example: one PE sends 8 values two hops east.

    fab = Fabric(4, 1)
    prog = Program(
        buffers={"x": np.arange(32.0).reshape(1, 4, 8), "y": np.zeros((1, 4, 8))},
        flows=(FlowGroup("send", src=np.array([[0, 0]]), tree=multicast_xy([(2, 0)]), length=8,
                         src_buf="x", dst_buf="y"),),
    )
    fab.run(prog).cycles   # 2 hops + 2*2 ramp + 7 = 13
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cgpt.backends.mesh.fabric_engine import ranges, simulate
from cgpt.backends.mesh.fabric_params import FabricParams
from cgpt.ir.diagnostics import CompileError

PORTS = ("east", "west", "north", "south", "ramp_up", "ramp_down")  # the last axis of link_busy


@dataclass(frozen=True)
class RouteTree:
    """One color's multicast route, in offsets from its source PE (a router's entry in the color's table maps
    the direction a wavelet comes from to the directions it leaves by; the tree is those entries joined).

    Router i sits at (dx[i], dy[i]) and is fed by router parent[i] one hop away; router 0 is the source's
    own router (offset (0, 0), parent -1), fed by the source ramp. deliver[i] sends wavelets down router i's
    ramp into its PE. Parents come before children, and every leaf delivers.
    """

    dx: np.ndarray
    dy: np.ndarray
    parent: np.ndarray
    deliver: np.ndarray

    def __post_init__(self) -> None:
        for name, dt in (("dx", np.int64), ("dy", np.int64), ("parent", np.int64), ("deliver", bool)):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=dt))
        n = len(self.dx)
        if n == 0 or self.dx[0] != 0 or self.dy[0] != 0 or self.parent[0] != -1:
            raise CompileError("a route tree starts at the source's own router (offset 0, 0)")
        kids = np.arange(1, n)
        par = self.parent[1:]
        if np.any(par < 0) or np.any(par >= kids):
            raise CompileError("a route tree lists every router after its parent")
        if np.any(np.abs(self.dx[kids] - self.dx[par]) + np.abs(self.dy[kids] - self.dy[par]) != 1):
            raise CompileError("each router of a route is one hop from its parent")
        leaf = np.ones(n, dtype=bool)
        leaf[par] = False
        if np.any(leaf & ~self.deliver):
            raise CompileError("a route tree has a branch that delivers nowhere")

    @property
    def hops(self) -> int:
        """Hops from the source to its farthest delivery."""
        return int(np.max(np.abs(self.dx) + np.abs(self.dy)))


def multicast_xy(targets: Sequence[tuple[int, int]] | np.ndarray) -> RouteTree:
    """The union of dimension-ordered (X, then Y) routes from the source to each target offset.

    `multicast_xy([(3, 0)])` is a 3-hop path east; `multicast_xy([(x, y) for ...all...])` a 2-D broadcast.
    """
    t = np.asarray(targets, dtype=np.int64).reshape(-1, 2)
    if not len(t):
        raise CompileError("a multicast route needs at least one target")
    tx, ty = t[:, 0], t[:, 1]
    row = np.arange(min(0, tx.min()), max(0, tx.max()) + 1)
    cols, inv = np.unique(tx, return_inverse=True)
    lo = np.zeros(len(cols), dtype=np.int64)
    hi = np.zeros(len(cols), dtype=np.int64)
    np.minimum.at(lo, inv, ty)
    np.maximum.at(hi, inv, ty)
    span = hi - lo + 1
    cy = ranges(lo, span)
    cx = np.repeat(cols, span)
    keep = cy != 0
    xs = np.concatenate([row, cx[keep]])
    ys = np.concatenate([np.zeros_like(row), cy[keep]])
    order = np.argsort(np.abs(xs) + np.abs(ys), kind="stable")
    xs, ys = xs[order], ys[order]
    grid = np.full((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1), -1, dtype=np.int64)
    grid[ys - ys.min(), xs - xs.min()] = np.arange(len(xs))
    px = np.where(ys == 0, xs - np.sign(xs), xs)
    py = np.where(ys == 0, 0, ys - np.sign(ys))
    parent = grid[py - ys.min(), px - xs.min()]
    parent[0] = -1
    deliver = np.zeros(len(xs), dtype=bool)
    deliver[grid[ty - ys.min(), tx - xs.min()]] = True
    return RouteTree(xs, ys, parent, deliver)


@dataclass(frozen=True)
class FlowGroup:
    """Flows of one shape: the same route tree and length from each source PE in `src` ((n, 2) of x, y).

    Wavelet j carries src_buf[y, x, src_offset + j] and lands in dst_buf[..., dst_offset + j] at every
    delivery, added to what is there if `accumulate`. Groups may share a name: dependencies name groups, and
    all groups of a name at a PE must be done for that name to be done there.
    """

    name: str
    src: np.ndarray
    tree: RouteTree
    length: int
    src_buf: str
    dst_buf: str
    accumulate: bool = False
    after: tuple[str, ...] = ()
    stream_after: tuple[str, ...] = ()
    src_offset: int = 0
    dst_offset: int = 0


@dataclass(frozen=True)
class ComputeGroup:
    """The same computation on each PE in `pes` ((n, 2) of x, y), taking `cycles` cycles from its start.

    `fn(buffers, ys, xs)` updates the buffers of the PEs (ys, xs) in place when their compute finishes.
    """

    name: str
    pes: np.ndarray
    cycles: int
    fn: Callable[[Mapping[str, np.ndarray], np.ndarray, np.ndarray], None]
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Program:
    """Initial PE memory (name -> (h, w, words) array), flows and computes; run it with `Fabric.run`."""

    buffers: Mapping[str, np.ndarray]
    flows: tuple[FlowGroup, ...] = ()
    computes: tuple[ComputeGroup, ...] = ()


@dataclass(frozen=True)
class FabricResult:
    """What a run produced: its cycles, final PE memory, wavelets carried per link, and per-name finish."""

    cycles: int
    buffers: Mapping[str, np.ndarray]
    link_busy: np.ndarray  # (h, w, 6): wavelets each link carried, indexed by PORTS
    finished: Mapping[str, int] = field(default_factory=dict)


class Fabric:
    """A w x h mesh of PEs and routers; `run` simulates a `Program` cycle by cycle."""

    def __init__(self, w: int, h: int, params: FabricParams | None = None) -> None:
        if w < 1 or h < 1:
            raise CompileError(f"a fabric needs at least one PE, got {w} x {h}")
        self.w, self.h = w, h
        self.params = params or FabricParams()

    def run(self, program: Program, max_cycles: int = 50_000_000) -> FabricResult:
        """Simulate `program` to completion and return its cycles, memory and link use."""
        cycles, buffers, busy, finished = simulate(self.w, self.h, self.params, program, max_cycles)
        return FabricResult(cycles, buffers, busy, finished)

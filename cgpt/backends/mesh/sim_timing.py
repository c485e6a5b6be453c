"""The simulator's clock: cycles of every mesh op, transfer and sample of a placed program, from the target's numbers.

    timing = time_program(module)
    timing.period, timing.fill, timing.latency         # cycles per sample, first sample, whole batch

Per op (one sample; `kernel_phases` has the patterns):
    kernel       kernels.py's cycles at the op's tiling (the compile report's compute cycles)
    broadcast    activations multicast into the block         } costed with collectives.py, the HPDC'24 model
    reduce       partial results combined across the block    } T = max(C, E/N) + L + (2 T_R + 1) D
    transfer_in  wavelets on the busiest link of the routes into it, counting every transfer sharing that link
    busy         the max of those: tokens stream, so the phases overlap and the slowest one sets the pace
Pipelined: a region's stage is the sum of its ops' busy cycles; one sample leaves per slowest stage (the period);
the first sample takes the critical path of busy cycles plus transfer latencies (hops and ramps), and B samples
take fill + (B - 1) * period. Streaming: ops run in program order on the whole mesh, each for
max(B * busy, weight bytes / streaming bytes per cycle), since a streamed weight serves the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cgpt.backends.mesh import collectives as coll
from cgpt.backends.mesh.fabric_params import FabricParams
from cgpt.backends.mesh.kernels import ACC_BYTES, KernelSpec, cycles_at
from cgpt.backends.mesh.program import (
    kernel_spec,
    module_dtype,
    module_mode,
    module_target,
    rect_of,
    region_groups,
    tied_tables,
    transfer_routes,
)
from cgpt.backends.mesh.report import region_name
from cgpt.backends.mesh.routing import RouteResult
from cgpt.backends.mesh.routing import transfer_streams as route_streams  # the paths the loads were routed on
from cgpt.backends.mesh.sim_values import linear_reduction
from cgpt.backends.mesh.target import Target
from cgpt.ir.core import Module, Operation
from cgpt.ir.diagnostics import CgptError


@dataclass(frozen=True)
class Phases:
    """A kernel's communication on its block for one sample: what pattern, how long, and what it moves."""

    pattern: str
    broadcast: float
    reduce: float
    link_bytes: float  # bytes per sample on the busiest link inside the block
    sram_bytes: float  # bytes read from SRAM per sample, all PEs together


def fabric_params(target: Target, dtype: str) -> FabricParams:
    """collectives.py's parameters for `target` computing in `dtype`."""
    return FabricParams(link_bytes_per_cycle=int(target.link_bytes_per_cycle),
                        hop_latency_cycles=target.hop_latency_cycles, ramp_latency_cycles=target.ramp_latency_cycles,
                        flops_per_cycle=float(target.flops_per_cycle[dtype]))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def kernel_phases(spec: KernelSpec, tw: int, th: int, params: FabricParams, id_bytes: int = 8) -> Phases:
    """The collectives of `spec` tiled tw x th (the layouts of kernels.py), per sample of spec.tokens tokens.

    linear      x's row block multicast along its row of tw PEs; f32 partial sums chain-reduced down the th
                rows (tree-reduced for a one-token GEMV)
    attention   q multicast down each head column of th PEs; flash partials (hd values, max, sum) chain-reduced
    layer_norm  per-token mean, then variance, all-reduced along the row of tw PEs (chain there and back)
    embedding   token ids multicast to the whole tw x th block (every PE holds part of the table)
    residual    none
    """
    t, isz = spec.tokens, spec.itemsize
    if spec.kind == "linear":
        kb, nb = _cdiv(spec.k, th), _cdiv(spec.n, tw)
        x_bytes, partial_bytes = t * kb * isz, t * nb * ACC_BYTES
        tree = linear_reduction(t) == "tree"
        reduce = coll.tree_reduce_cycles if tree else coll.chain_reduce_cycles
        return Phases(f"row broadcast + {'tree' if tree else 'chain'} reduce",
                      float(coll.row_broadcast_cycles(x_bytes, tw, params)),
                      float(reduce(partial_bytes, th, params)), float(max(x_bytes, partial_bytes)),
                      float(t * spec.k * spec.n * isz))
    if spec.kind == "attention":
        hb = _cdiv(spec.heads, tw)
        q_bytes, partial_bytes = t * hb * spec.head_dim * isz, t * hb * (spec.head_dim + 2) * ACC_BYTES
        return Phases("column broadcast of q + chain reduce of flash partials",
                      float(coll.row_broadcast_cycles(q_bytes, th, params)),
                      float(coll.chain_reduce_cycles(partial_bytes, th, params)), float(max(q_bytes, partial_bytes)),
                      float(2.0 * t * t * spec.heads * spec.head_dim * isz))
    if spec.kind == "layer_norm":
        stat_bytes = _cdiv(t, th) * ACC_BYTES
        return Phases("row all-reduce of mean, then variance (chain)", 0.0,
                      float(2 * coll.allreduce_cycles(stat_bytes, tw, "chain", params)), float(stat_bytes),
                      float((t + 2) * spec.n * isz))
    if spec.kind == "embedding":
        ids = t * id_bytes
        return Phases("2-D broadcast of token ids", float(coll.broadcast_2d_cycles(ids, tw, th, params)), 0.0,
                      float(ids), float(t * spec.n * isz))
    return Phases("elementwise", 0.0, 0.0, 0.0, float(2 * t * spec.n * isz))


@dataclass(frozen=True)
class OpTiming:
    """One mesh op: where it runs, its phases in cycles per sample, and its work per sample."""

    index: int
    region: int
    op: str
    loc: tuple[str, ...]
    tiling: tuple[int, int]
    pes: int  # of its region
    pattern: str
    kernel: float
    broadcast: float
    reduce: float
    transfer_in: float
    stream: float  # streaming mode: cycles to bring its weights onto the wafer
    flops: float
    sram_bytes: float
    link_bytes: float
    weight_bytes: int

    @property
    def busy(self) -> float:
        return max(self.kernel, self.broadcast, self.reduce, self.transfer_in)


@dataclass(frozen=True)
class TransferTiming:
    """One mesh.transfer: producer and consumer op indices (-1: none), its route, and its cycles per sample."""

    src: int
    dst: int
    bytes: int
    hops: int
    streams: int
    link_bytes: float  # on the busiest link of its route, other transfers' bytes included
    cycles: float  # collectives.transfer_cycles of link_bytes over hops
    latency: float  # hops and ramps: what one wavelet pays

    @property
    def wavelets(self) -> float:
        return self.cycles - self.latency + 1.0 if self.cycles else 0.0


@dataclass(frozen=True, eq=False)
class ProgramTiming:
    """The timed program: ops, transfers, regions (op indices, names) and the schedule of the first sample."""

    target: Target
    mode: str
    dtype: str
    batch: int
    tokens: int
    ops: tuple[OpTiming, ...]
    transfers: tuple[TransferTiming, ...]
    regions: tuple[tuple[int, ...], ...]
    region_names: tuple[str, ...]
    start: tuple[float, ...]  # first sample (streaming: the batch) start of each op, cycles
    finish: tuple[float, ...]
    period: float  # cycles per sample in steady state
    fill: float  # cycles until the first sample's outputs are out
    latency: float  # cycles until the whole batch is out
    critical_path: tuple[int, ...]  # op indices, first to last
    routes: RouteResult | None

    def stage(self, region: int) -> float:
        """Cycles per sample the region is busy (pipelined) or its ops' total time per sample (streaming)."""
        ops = [self.ops[i] for i in self.regions[region]]
        if self.mode == "pipelined":
            return sum(o.busy for o in ops)
        return sum(max(self.batch * o.busy, o.stream) for o in ops) / self.batch


def time_program(module: Module) -> ProgramTiming:
    """Time a placed program from its attributes and types alone (weights are never read)."""
    if "target" not in module.attributes:
        raise CgptError("the module is not placed for a mesh (compile with cgpt-compile --target mesh)")
    target, mode, dtype = module_target(module), module_mode(module), module_dtype(module)
    fn = module.main
    tied = tied_tables(module)
    groups = region_groups(fn, tied)
    if not groups:
        raise CgptError("the module has no mesh ops to simulate")
    params = fabric_params(target, dtype)
    position = {op: i for i, op in enumerate(fn.ops)}
    order = sorted((op for g in groups for op in g), key=position.__getitem__)
    index = {op: i for i, op in enumerate(order)}
    region_of = {op: r for r, g in enumerate(groups) for op in g}
    transfers = [op for op in fn.ops if op.name == "mesh.transfer"]
    routes = transfer_routes(fn, target) if transfers else None
    xfers = _time_transfers(transfers, index, routes, params)
    incoming: dict[int, float] = {}
    for x in xfers:
        if x.dst >= 0:
            incoming[x.dst] = max(incoming.get(x.dst, 0.0), x.wavelets)
    stream_rate = target.stream_bytes_per_s / target.clock_hz
    ops, tokens = [], 0
    for i, op in enumerate(order):
        spec = kernel_spec(op, target, mode, tied)
        tokens = max(tokens, spec.tokens)
        tiling = op.attributes["tiling"]
        ph = kernel_phases(spec, tiling.w, tiling.h, params, op.operands[0].type.itemsize)
        region = op.attributes["region"]
        ops.append(OpTiming(
            i, region_of[op], op.name, op.loc.names, (tiling.w, tiling.h), region.w * region.h, ph.pattern,
            cycles_at(spec, tiling.w, tiling.h), ph.broadcast, ph.reduce, incoming.get(i, 0.0),
            spec.weight_bytes / stream_rate if mode == "streaming" else 0.0, spec.flops, ph.sram_bytes,
            ph.link_bytes, spec.weight_bytes))
    batch = _batch(module)
    names = tuple(region_name(r, g) for r, g in enumerate(groups))
    regions = tuple(tuple(index[op] for op in g) for g in groups)
    preds = _predecessors(order, index, transfers, xfers)
    if mode == "pipelined":
        schedule = _pipelined(ops, xfers, regions, preds, batch)
    else:
        schedule = _streaming(ops, batch)
    return ProgramTiming(target, mode, dtype, batch, tokens, tuple(ops), tuple(xfers), regions, names, *schedule,
                         routes if mode == "pipelined" else None)


def _batch(module: Module) -> int:
    """Samples per run: the leading dim of the first input ([batch, seq] token ids)."""
    args = module.main.args
    shape = args[0].type.shape if args else ()
    return int(shape[0]) if len(shape) >= 2 and isinstance(shape[0], int) else 1


def _time_transfers(transfers: list[Operation], index: dict[Operation, int], routes: RouteResult | None,
                    params: FabricParams) -> list[TransferTiming]:
    out = []
    for op in transfers:
        src = op.operands[0].owner
        users = [u for u in op.results[0].users if u in index]
        a = rect_of(op.attributes["src"])
        b = rect_of(op.attributes["dst"])
        streams = route_streams(a, b)
        assert routes is not None
        count = int(streams.sx.size)
        busiest = max(route_link_bytes(streams, routes), float(op.attributes["bytes"]) / max(count, 1))
        hops = int(op.attributes["hops"])
        cycles = float(coll.transfer_cycles(int(np.ceil(busiest)), hops, params))
        latency = float(coll.transfer_cycles(1, hops, params))
        for dst in users or [None]:
            out.append(TransferTiming(index.get(src, -1) if src is not None else -1,
                                      index[dst] if dst is not None else -1, int(op.attributes["bytes"]), hops,
                                      count, busiest, cycles, latency))
    return out


def route_link_bytes(streams: Any, routes: RouteResult) -> float:
    """The most bytes per sample on any link that routing's `streams` (sx, sy, dx, dy, legs()) cross."""
    x_row, y_col = streams.legs()
    best = 0.0
    for along_x, forward, load in ((True, True, routes.link_load_east), (True, False, routes.link_load_west),
                                   (False, True, routes.link_load_south), (False, False, routes.link_load_north)):
        src, dst = (streams.sx, streams.dx) if along_x else (streams.sy, streams.dy)
        m = dst > src if forward else dst < src
        if m.any():
            line = (x_row if along_x else y_col)[m]
            best = max(best, _legs_max(load, line, np.minimum(src, dst)[m], np.maximum(src, dst)[m], along_x))
    return best


def _legs_max(load: np.ndarray, fixed: np.ndarray, lo: np.ndarray, hi: np.ndarray, along_x: bool) -> float:
    """max of load over links lo..hi-1 of each leg (link i joins PE i and i + 1), legs on lines `fixed`."""
    span = int((hi - lo).max())
    idx = lo[:, None] + np.arange(span)[None, :]
    valid = idx < hi[:, None]
    idx = np.minimum(idx, hi[:, None] - 1)
    vals = load[fixed[:, None], idx] if along_x else load[idx, fixed[:, None]]
    return float(np.where(valid, vals, 0.0).max())


def _predecessors(order: list[Operation], index: dict[Operation, int], transfers: list[Operation],
                  xfers: list[TransferTiming]) -> list[list[tuple[int, float]]]:
    """For each op, (producer op, cycles from its finish to our start): a transfer's latency, or 0 in-region."""
    preds: list[list[tuple[int, float]]] = [[] for _ in order]
    for x in xfers:
        if x.src >= 0 and x.dst >= 0:
            preds[x.dst].append((x.src, x.latency))
    transfer_set = set(transfers)
    for op in order:
        for v in op.operands:
            if v.owner in index and v.owner not in transfer_set:
                preds[index[op]].append((index[v.owner], 0.0))
    return preds


Schedule = tuple[tuple[float, ...], tuple[float, ...], float, float, float, tuple[int, ...]]


def _pipelined(ops: list[OpTiming], xfers: list[TransferTiming], regions: tuple[tuple[int, ...], ...],
               preds: list[list[tuple[int, float]]], batch: int) -> Schedule:
    """(start, finish) of the first sample's ops, period, fill, batch latency, and the critical path."""
    start, finish, via = [0.0] * len(ops), [0.0] * len(ops), [-1] * len(ops)
    for i, o in enumerate(ops):
        for p, lat in preds[i]:
            if finish[p] + lat > start[i]:
                start[i], via[i] = finish[p] + lat, p
        finish[i] = start[i] + o.busy
    fill = max(finish + [finish[x.src] + x.cycles for x in xfers if x.dst < 0 and x.src >= 0])
    path = [int(np.argmax(finish))]
    while via[path[-1]] >= 0:
        path.append(via[path[-1]])
    period = max(sum(ops[i].busy for i in r) for r in regions)
    return tuple(start), tuple(finish), period, fill, fill + (batch - 1) * period, tuple(reversed(path))


def _streaming(ops: list[OpTiming], batch: int) -> Schedule:
    """Ops one after another, each on the whole mesh for the whole batch."""
    start, finish, clock = [], [], 0.0
    for o in ops:
        start.append(clock)
        clock += max(batch * o.busy, o.stream)
        finish.append(clock)
    return tuple(start), tuple(finish), clock / batch, clock, clock, tuple(range(len(ops)))

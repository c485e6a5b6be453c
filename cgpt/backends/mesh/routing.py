"""Dimension-ordered routes between placed rectangles: per-link load and routing colors per PE.

    result = route_transfers(placement.rects, edges, target)
    result.max_link_bytes            # bytes per sample on the busiest directed link
    result.hottest(3)                # [(x, y, "east", bytes), ...]
    result.check_colors()            # CompileError if the routes need more colors than the target has

The stream convention, the same for every transfer A -> B (A the producer's rectangle):
- if A's and B's columns are disjoint (B east or west of A, perhaps also above or below), the transfer is A.h
  parallel streams, one per row of A, routed XY. The stream of row y leaves A's edge column facing B. If B
  has row y, it runs straight along it to B's edge column facing A. Otherwise it runs along row y to a column
  of B and turns into B's edge row nearest to y; the streams missing B on one side enter at columns spread
  evenly across B, the nearest row at the column nearest A, so they neither share a column nor cross.
- otherwise their rows are disjoint (B north or south of A): the same with rows and columns exchanged, so
  A.w streams, one per column of A, leave A's edge row facing B and are routed YX (Y first).
Each stream carries bytes / streams. Side by side rectangles of equal height therefore load exactly the links
between them, one hop per row, and no link carries a transfer's streams twice unless B's side is shorter
than the streams meeting it. Every transfer gets its own color, chosen greedily so that no PE carries two
transfers on the same color.
Link arrays are indexed [y, x] by the PE the data leaves: east[y, x] is (x, y) -> (x+1, y), south[y, x] is
(x, y) -> (x, y+1) (y grows southwards), west[y, x] is (x+1, y) -> (x, y), north[y, x] is (x, y+1) -> (x, y).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from cgpt.backends.mesh.placement import Rect, TrafficEdge, validate_rects
from cgpt.backends.mesh.target import Target
from cgpt.ir.diagnostics import CompileError

DIRECTIONS = ("east", "west", "south", "north")


@dataclass(frozen=True)
class Route:
    """One transfer: `streams` parallel XY streams carrying `bytes` per sample in all, on one `color`.

    `hops` is the longest stream's length in links (the latency-relevant one); `byte_hops` is the sum over
    streams of bytes x links, the transfer's share of total link traffic.
    """

    src: str
    dst: str
    bytes: float
    streams: int
    hops: int
    byte_hops: float
    color: int


@dataclass(frozen=True, eq=False)
class RouteResult:
    """Routes with the per-link load they cause (bytes per sample, read-only arrays) and colors per PE."""

    width: int
    height: int
    routing_colors: int
    routes: tuple[Route, ...]
    link_load_east: np.ndarray
    link_load_west: np.ndarray
    link_load_south: np.ndarray
    link_load_north: np.ndarray
    colors_per_pe: np.ndarray

    def _loads(self) -> tuple[np.ndarray, ...]:
        return (self.link_load_east, self.link_load_west, self.link_load_south, self.link_load_north)

    @property
    def max_link_bytes(self) -> float:
        """Bytes per sample on the busiest directed link."""
        return max((float(a.max()) for a in self._loads() if a.size), default=0.0)

    @property
    def mean_link_bytes(self) -> float:
        """Mean bytes per sample over the directed links that carry any traffic (0 if none do)."""
        loads = np.concatenate([a.ravel() for a in self._loads()])
        used = loads[loads > 0]
        return float(used.mean()) if used.size else 0.0

    @property
    def total_byte_hops(self) -> float:
        """Sum of the load of every link: bytes x hops over all transfers."""
        return float(sum(a.sum() for a in self._loads()))

    @property
    def max_colors_per_pe(self) -> int:
        """The most transfers crossing one PE: no coloring can use fewer colors."""
        return int(self.colors_per_pe.max()) if self.colors_per_pe.size else 0

    @property
    def colors_used(self) -> int:
        """Distinct colors of the greedy coloring (each PE sees each color at most once)."""
        return max((r.color for r in self.routes), default=-1) + 1

    def max_link_cycles(self, link_bytes_per_cycle: float) -> float:
        """Cycles per sample the busiest link needs at `link_bytes_per_cycle` (a throughput bound)."""
        return self.max_link_bytes / link_bytes_per_cycle

    def hottest(self, k: int) -> list[tuple[int, int, str, float]]:
        """The `k` busiest directed links as (x, y, direction, bytes), (x, y) the PE the data leaves."""
        flat = [a.ravel() for a in self._loads()]
        loads = np.concatenate(flat)
        k = min(k, int((loads > 0).sum()))
        if k <= 0:
            return []
        kth = -np.partition(-loads, k - 1)[k - 1]
        above = np.flatnonzero(loads > kth)
        top = np.concatenate([above, np.flatnonzero(loads == kth)[: k - above.size]])
        top = top[np.lexsort((top, -loads[top]))]  # by load, ties by array order: deterministic
        offsets = np.cumsum([0] + [f.size for f in flat])
        out = []
        for i in top.tolist():
            d = int(np.searchsorted(offsets, i, side="right")) - 1
            y, x = np.unravel_index(i - offsets[d], self._loads()[d].shape)
            out.append((int(x), int(y), DIRECTIONS[d], float(loads[i])))
        return out

    def check_colors(self) -> None:
        """Raise `CompileError` if the routes need more colors than the target's routers have."""
        if self.colors_used <= self.routing_colors:
            return
        y, x = np.unravel_index(int(np.argmax(self.colors_per_pe)), self.colors_per_pe.shape)
        raise CompileError(
            f"routes use {self.colors_used} colors but the target has {self.routing_colors}; PE ({x}, {y}) "
            f"carries {self.max_colors_per_pe} transfers; spread the kernels or merge transfers")


def route_transfers(rects: Mapping[str, Rect], edges: Sequence[TrafficEdge], target: Target) -> RouteResult:
    """Route every edge between its rectangles, one stream per row or column (see the module docstring)."""
    width, height = target.width, target.height
    validate_rects(rects, width, height)
    for e in edges:
        for n in (e.src, e.dst):
            if n not in rects:
                raise CompileError(f"transfer {e.src} -> {e.dst} names '{n}', which has no rectangle")
        if e.src == e.dst:
            raise CompileError(f"transfer {e.src} -> {e.dst} connects a rectangle to itself")
    streams = [transfer_streams(rects[e.src], rects[e.dst]) for e in edges]
    counts = np.array([s.sx.size for s in streams], dtype=np.int64)
    every = _Streams(*(np.concatenate([getattr(s, f) for s in streams]) if streams else np.zeros(0, np.int64)
                       for f in _Streams._fields))
    nbytes = np.array([e.bytes_per_sample for e in edges], dtype=np.float64)
    per_stream = np.repeat(nbytes / np.maximum(counts, 1), counts)
    loads = _link_loads(every, per_stream, width, height)
    hops = np.abs(every.dx - every.sx) + np.abs(every.dy - every.sy)
    colors, colors_per_pe = _color(streams, width, height)
    starts = np.concatenate(([0], np.cumsum(counts)))
    routes = tuple(
        Route(e.src, e.dst, float(e.bytes_per_sample), int(n), int(hops[a:b].max()) if n else 0,
              float((hops[a:b] * per_stream[a:b]).sum()), c)
        for e, n, a, b, c in zip(edges, counts, starts[:-1], starts[1:], colors, strict=True))
    for a in (*loads, colors_per_pe):
        a.setflags(write=False)
    return RouteResult(width, height, target.routing_colors, routes, *loads, colors_per_pe)


class _Streams(NamedTuple):
    """Parallel streams: from (sx, sy) to (dx, dy), X first unless `yx`."""

    sx: np.ndarray
    sy: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    yx: np.ndarray

    def legs(self) -> tuple[np.ndarray, np.ndarray]:
        """The row of each stream's X leg and the column of its Y leg."""
        return np.where(self.yx, self.dy, self.sy), np.where(self.yx, self.sx, self.dx)


def _streams(a: Rect, b: Rect) -> _Streams:
    """The streams of the transfer a -> b."""
    if a.x_end <= b.x or b.x_end <= a.x:
        sy, dy, sx, dx = _facing(a.y, a.h, b.y, b.h, a.x, a.w, b.x, b.w)
        return _Streams(sx, sy, dx, dy, np.zeros(a.h, dtype=bool))
    sx, dx, sy, dy = _facing(a.x, a.w, b.x, b.w, a.y, a.h, b.y, b.h)
    return _Streams(sx, sy, dx, dy, np.ones(a.w, dtype=bool))


def _spread(a: Rect, b: Rect) -> _Streams:
    """One stream per line along A's longer side, each entering a different part of B, routed XY.

    A one-column producer above its consumer has a single facing link, so the facing convention funnels the
    whole transfer through it; leaving along every row of A and spreading the arrivals over B uses them all.
    """
    if a.h >= a.w:
        sy = np.arange(a.y, a.y_end, dtype=np.int64)
        sx = np.full(a.h, a.x_end - 1 if b.x >= a.x_end else a.x, dtype=np.int64)
    else:
        sx = np.arange(a.x, a.x_end, dtype=np.int64)
        sy = np.full(a.w, a.y_end - 1 if b.y >= a.y_end else a.y, dtype=np.int64)
    k = np.arange(sx.size, dtype=np.int64) * (b.w * b.h) // sx.size
    return _Streams(sx, sy, b.x + k % b.w, b.y + k // b.w, np.zeros(sx.size, dtype=bool))


def _peak_share(st: _Streams) -> float:
    """The largest fraction of a transfer that any one link carries, computed in the streams' bounding box."""
    x0, y0 = int(min(st.sx.min(), st.dx.min())), int(min(st.sy.min(), st.dy.min()))
    x1, y1 = int(max(st.sx.max(), st.dx.max())), int(max(st.sy.max(), st.dy.max()))
    local = _Streams(st.sx - x0, st.sy - y0, st.dx - x0, st.dy - y0, st.yx)
    share = np.full(st.sx.size, 1.0 / st.sx.size)
    return max(float(load.max(initial=0.0)) for load in _link_loads(local, share, x1 - x0 + 1, y1 - y0 + 1))


def transfer_streams(a: Rect, b: Rect) -> _Streams:
    """The facing convention, unless spreading the streams loads the busiest link less."""
    facing = _streams(a, b)
    spread = _spread(a, b)
    return spread if _peak_share(spread) < 0.5 * _peak_share(facing) else facing


def _facing(a0: int, an: int, b0: int, bn: int, a_across: int, a_size: int, b_across: int,
            b_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One stream per line of A (rows, or columns when called transposed); returns (s_line, d_line, s, d).

    Along the lines: a stream stays on its line where B has it, else lands on B's nearest edge line. Across:
    it leaves A's edge facing B and enters at B's edge facing A, or, if its line misses B, at a position
    spread across B (nearer lines nearer to A).
    """
    lines = np.arange(a0, a0 + an, dtype=np.int64)
    forward = b_across >= a_across + a_size  # B lies after A across the lines
    source = np.full(an, a_across + a_size - 1 if forward else a_across, dtype=np.int64)
    near_edge = b_across if forward else b_across + b_size - 1
    target = np.full(an, near_edge, dtype=np.int64)
    landing = np.clip(lines, b0, b0 + bn - 1)
    for missed in (lines < b0, lines >= b0 + bn):
        idx = np.flatnonzero(missed)
        if idx.size:
            order = idx[np.argsort(np.abs(lines[idx] - landing[idx]), kind="stable")]
            offset = np.arange(idx.size) * b_size // idx.size
            target[order] = near_edge + offset if forward else near_edge - offset
    return lines, landing, source, target


def _link_loads(st: _Streams, b: np.ndarray, width: int,
                height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-direction link loads from difference arrays: +b where a leg starts, -b where it ends, cumsum."""
    x_row, y_col = st.legs()
    out = []
    for along_x, forward in ((True, True), (True, False), (False, True), (False, False)):
        src, dst = (st.sx, st.dx) if along_x else (st.sy, st.dy)
        mask = dst > src if forward else dst < src
        fixed = (x_row if along_x else y_col)[mask]
        lo, hi = np.minimum(src, dst)[mask], np.maximum(src, dst)[mask]  # link i joins PE i and i+1
        diff = np.zeros((height, width + 1) if along_x else (height + 1, width))
        index = (fixed, lo) if along_x else (lo, fixed)
        np.add.at(diff, index, b[mask])
        np.add.at(diff, (fixed, hi) if along_x else (hi, fixed), -b[mask])
        load = np.cumsum(diff, axis=1 if along_x else 0)
        out.append(load[:, : width - 1] if along_x else load[: height - 1, :])
    return out[0], out[1], out[2], out[3]


def _color(streams: list[_Streams], width: int, height: int) -> tuple[list[int], np.ndarray]:
    """Greedy coloring in edge order: each transfer takes the lowest color free on every PE of its streams."""
    used = np.zeros((1, height, width), dtype=np.uint64)
    full = np.uint64(2**64 - 1)
    colors = []
    for st in streams:
        y0, x0, mask = _path_mask(st)
        box = (slice(y0, y0 + mask.shape[0]), slice(x0, x0 + mask.shape[1]))
        taken = [np.bitwise_or.reduce(used[w][box][mask]) for w in range(len(used))]
        word = next((w for w, t in enumerate(taken) if t != full), len(used))
        if word == len(used):  # more than 64 * words colors: open another word of bits
            used = np.concatenate([used, np.zeros((1, height, width), dtype=np.uint64)])
            taken.append(np.uint64(0))
        free = ~int(taken[word]) & (2**64 - 1)
        bit = (free & -free).bit_length() - 1
        used[word][box][mask] |= np.uint64(1 << bit)
        colors.append(64 * word + bit)
    return colors, np.sum([np.bitwise_count(u) for u in used], axis=0).astype(np.int64)


def _path_mask(st: _Streams) -> tuple[int, int, np.ndarray]:
    """The PEs on a transfer's streams, endpoints included: (y0, x0, mask over its bounding box)."""
    x0 = int(min(st.sx.min(), st.dx.min()))
    y0 = int(min(st.sy.min(), st.dy.min()))
    shape = (int(max(st.sy.max(), st.dy.max())) - y0 + 2, int(max(st.sx.max(), st.dx.max())) - x0 + 2)
    x_row, y_col = st.legs()
    rows = np.zeros(shape, dtype=np.int32)
    cols = np.zeros(shape, dtype=np.int32)
    np.add.at(rows, (x_row - y0, np.minimum(st.sx, st.dx) - x0), 1)
    np.add.at(rows, (x_row - y0, np.maximum(st.sx, st.dx) - x0 + 1), -1)
    np.add.at(cols, (np.minimum(st.sy, st.dy) - y0, y_col - x0), 1)
    np.add.at(cols, (np.maximum(st.sy, st.dy) - y0 + 1, y_col - x0), -1)
    on = (np.cumsum(rows, axis=1) > 0) | (np.cumsum(cols, axis=0) > 0)
    return y0, x0, on[:-1, :-1]

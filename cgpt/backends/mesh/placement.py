"""Kernel sizing and placement for pipelined mode: the ISPD 2020 contest problem on the Cerebras CS-1 fabric.

Every kernel (a fused op) gets its own rectangle of PEs on a W x H mesh; samples stream through the kernels,
so throughput is set by the slowest one. `place_kernels` chooses each rectangle's size and position, with no
overlap and inside the mesh, to minimise first the slowest stage (max over kernels of its cycles) and then the
traffic-weighted Manhattan distance between producer and consumer centres:

    kernels = [KernelDemand("qkv", WorkCycles(work=56.6e6), min_pes=83),
               KernelDemand("attn", WorkCycles(work=6.3e6))]
    placement = place_kernels(kernels, [TrafficEdge("qkv", "attn", 589_824)], width=750, height=994)
    placement.rects["qkv"]          # Rect(x=0, y=0, w=..., h=...)
    placement.stage_ratio           # stage_cycles_max / stage_cycles_lower_bound, >= 1

A kernel's cost model is any vectorised callable `cycles(w, h)` (int64 arrays in, float array of the same
shape out, `inf` for a shape the kernel cannot use) that never grows when the kernel gets another row or
column; a tiling that would be slower on more PEs should report the time of the best tiling that fits (idle
PEs). Identical cost models (equal frozen dataclasses such as `WorkCycles`) are evaluated once, so a 40-layer
model costs little more than one layer. The algorithm and the proofs of both lower bounds: docs/placement.md.
"""

from __future__ import annotations

import bisect
import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from cgpt.ir.diagnostics import CompileError

CycleModel = Callable[[np.ndarray, np.ndarray], np.ndarray]
_T_INFINITE = float(np.finfo(np.float64).max)  # "any time at all": only inadmissible (inf) shapes exceed it


@dataclass(frozen=True)
class WorkCycles:
    """Cycles of a kernel that divides its work over its PEs: `fixed + work/(w*h) + span_w/w + span_h/h`.

    `work` is in PE-cycles (FLOPs / FLOP per cycle per PE); `span_w` and `span_h` are streaming terms that
    shrink with one side only (a linear's output columns stream along w, its input rows along h).

        >>> WorkCycles(work=1000.0, fixed=5.0)(np.array([10]), np.array([10]))
        array([15.])
    """

    work: float
    fixed: float = 0.0
    span_w: float = 0.0
    span_h: float = 0.0

    def __call__(self, w: np.ndarray, h: np.ndarray) -> np.ndarray:
        w = np.asarray(w, dtype=np.float64)
        h = np.asarray(h, dtype=np.float64)
        cycles = self.work / (w * h)
        # The placer calls this millions of times over; skipping zero terms halves its cost.
        if self.fixed:
            cycles += self.fixed
        if self.span_w:
            cycles += self.span_w / w
        if self.span_h:
            cycles += self.span_h / h
        return cycles


@dataclass(frozen=True)
class TiledCycles:
    """A kernel whose tilings only use some widths and heights (say divisors of N and K): on a w x h
    rectangle it runs its best tiling that fits, `inner(w', h')` with w' the largest allowed width <= w and h'
    likewise, the other PEs idle. This keeps cycles non-increasing in w and h, as the placer requires.

    `min_pes` is the fewest *used* PEs that hold the weights (inf below it); empty `widths` or `heights`
    allow every value.

        >>> TiledCycles(WorkCycles(work=1200.0), widths=(1, 2, 4))(np.array([3, 7]), np.array([10, 10]))
        array([60., 30.])
    """

    inner: CycleModel
    widths: tuple[int, ...] = ()
    heights: tuple[int, ...] = ()
    min_pes: int = 1

    def __call__(self, w: np.ndarray, h: np.ndarray) -> np.ndarray:
        used_w, used_h = _floor_to(np.asarray(w), self.widths), _floor_to(np.asarray(h), self.heights)
        usable = (used_w > 0) & (used_h > 0) & (used_w * used_h >= self.min_pes)
        cycles = np.asarray(self.inner(np.maximum(used_w, 1), np.maximum(used_h, 1)), dtype=np.float64)
        return np.where(usable, cycles, np.inf)


def _floor_to(x: np.ndarray, allowed: tuple[int, ...]) -> np.ndarray:
    """The largest allowed value <= x (0 if none); x itself when everything is allowed."""
    if not allowed:
        return x
    values = np.unique(np.asarray(allowed, dtype=np.int64))
    i = np.searchsorted(values, x, side="right") - 1
    return np.where(i >= 0, values[np.maximum(i, 0)], 0)


@dataclass(frozen=True)
class KernelDemand:
    """One kernel to place: its name, its cost model, and the fewest PEs whose SRAM holds its weights."""

    name: str
    cycles: CycleModel
    min_pes: int = 1


@dataclass(frozen=True)
class TrafficEdge:
    """Producer `src` sends `bytes_per_sample` bytes to consumer `dst` for every sample streamed through."""

    src: str
    dst: str
    bytes_per_sample: float


@dataclass(frozen=True)
class Rect:
    """PEs x..x+w-1 (columns, west to east) by y..y+h-1 (rows, north to south)."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def x_end(self) -> int:
        """One past the east column."""
        return self.x + self.w

    @property
    def y_end(self) -> int:
        """One past the south row."""
        return self.y + self.h

    @property
    def centre(self) -> tuple[float, float]:
        """The centre in PE coordinates (a half-integer when the side is even)."""
        return (self.x + (self.w - 1) / 2, self.y + (self.h - 1) / 2)


@dataclass(frozen=True)
class Placement:
    """Rectangles of a placement with their stage cycles, wirelength and the lower bounds they are judged by.

    `wirelength` is the sum over traffic edges of bytes x Manhattan distance between rectangle centres;
    `wirelength_lower_bound` bounds it for every non-overlapping placement of rectangles of the same sizes
    (see `wirelength_lower_bound`); `stage_cycles_lower_bound` holds for every placement of the kernels.
    """

    width: int
    height: int
    rects: Mapping[str, Rect] = field(hash=False)
    stage_cycles: Mapping[str, float] = field(hash=False)
    stage_cycles_max: float
    stage_cycles_lower_bound: float
    wirelength: float
    wirelength_lower_bound: float

    def __post_init__(self) -> None:
        # Read-only views, so a frozen Placement cannot be changed through its tables either.
        object.__setattr__(self, "rects", types.MappingProxyType(dict(self.rects)))
        object.__setattr__(self, "stage_cycles", types.MappingProxyType(dict(self.stage_cycles)))

    @property
    def bottleneck(self) -> str:
        """The kernel with the slowest stage."""
        return max(self.stage_cycles, key=self.stage_cycles.__getitem__)

    @property
    def stage_ratio(self) -> float:
        """stage_cycles_max / stage_cycles_lower_bound (1.0 is provably optimal)."""
        return self.stage_cycles_max / self.stage_cycles_lower_bound if self.stage_cycles_lower_bound else 1.0

    @property
    def wirelength_ratio(self) -> float:
        """wirelength / wirelength_lower_bound (1.0 is provably optimal for these rectangle sizes)."""
        return self.wirelength / self.wirelength_lower_bound if self.wirelength_lower_bound else 1.0

    @property
    def utilization(self) -> float:
        """Fraction of the mesh's PEs inside some rectangle."""
        return sum(r.area for r in self.rects.values()) / (self.width * self.height)


def place_kernels(
    kernels: Sequence[KernelDemand],
    edges: Sequence[TrafficEdge],
    width: int,
    height: int,
    *,
    stage_slack: float = 0.01,
    max_shelves: int = 48,
) -> Placement:
    """Size and place `kernels` (given in dataflow order) on a `width` x `height` mesh.

    For each shelf count n, the kernels are packed in order into rows of height H // n, serpentine (a kernel
    too wide for a row gets a full-width band), at the least stage target T at which they fit. Each such row
    structure is then re-sized exactly: the least T at which every row fits at its own height. Rows are laid
    out north to south, then mirrored and neighbours swapped while wirelength falls. The same is done with
    columns instead of rows (the transposed mesh). Among layouts whose slowest stage is within `stage_slack`
    of the best, the one with the least wirelength wins. Raises `CompileError` when the weights cannot fit
    (saying by how much) or no packing is found.
    """
    _check_inputs(kernels, edges, width, height)
    if not kernels:
        return Placement(width, height, {}, {}, 0.0, 0.0, 0.0, 0.0)
    classes, class_list = _classes(kernels)
    class_of = np.asarray(class_list)
    t_lb = _stage_lower_bound(classes, class_list, width, height)
    e = _edge_arrays(kernels, edges)
    frames = []
    for transposed in (False, True):
        frame_classes = [_Class(c.name, _Swapped(c.cycles), c.min_pes, True) for c in classes] if transposed \
            else classes
        w, h = (height, width) if transposed else (width, height)
        frames.append((transposed, w, _row_layouts(frame_classes, class_of, w, h, t_lb, e, stage_slack,
                                                   max_shelves)))
    if not any(laid for _, _, laid in frames):
        raise CompileError(f"no row or column packing of the {len(kernels)} kernels in dataflow order fits "
                           f"the {width} x {height} mesh, even with every kernel at its smallest shape; "
                           f"use a larger mesh or streaming mode")
    floor = min(stage for _, _, laid in frames for stage, _, _ in laid)
    improved = []
    for transposed, w, laid in frames:
        # Mirroring and swapping is the slow part: only the few shortest layouts within the slack get it.
        near = sorted((r for r in laid if r[0] <= floor * (1 + stage_slack)), key=lambda r: r[1])[:3]
        for stage, _, rects in near:
            better = _improve_wirelength(rects, e, w)
            improved.append((stage, [Rect(r.y, r.x, r.h, r.w) for r in better] if transposed else better))
    stage_max, rects = min(improved, key=lambda r: (_wirelength(r[1], e), r[0]))
    named = {k.name: r for k, r in zip(kernels, rects, strict=True)}
    validate_rects(named, width, height)
    cycles = _stage_cycles(rects, classes, class_of)
    return Placement(width, height, named, {k.name: float(c) for k, c in zip(kernels, cycles, strict=True)},
                     float(cycles.max()), t_lb, _wirelength(rects, e), _wirelength_lower_bound(rects, e))


def stage_lower_bound(kernels: Sequence[KernelDemand], width: int, height: int) -> float:
    """A lower bound on the slowest stage of every placement of `kernels` on a `width` x `height` mesh.

    Let a_k(T) be the smallest area w*h of a rectangle that fits the mesh (w <= W, h <= H), holds kernel k's
    weights (w*h >= min_pes) and runs it in at most T cycles. If some placement has slowest stage T_P, each of
    its rectangles is such a rectangle for T = T_P, so its area is >= a_k(T_P); the rectangles are disjoint
    inside the mesh, so sum_k a_k(T_P) <= W*H. a_k is non-increasing in T, so the condition holds for every
    T >= T_P and the least T at which it holds, T*, is <= T_P. The value returned is T* when found exactly,
    else a T at which the condition fails (within 1e-5 of T*), else the largest over kernels of its time on
    the whole mesh, which no placement can beat. For cycles = work/(w*h) this is about total work / total PEs.
    Needs cycles non-increasing in h (checked on samples). Raises `CompileError` when the kernels' weights
    alone need more PEs than the mesh has.
    """
    _check_inputs(kernels, [], width, height)
    if not kernels:
        return 0.0
    classes, class_of = _classes(kernels)
    return _stage_lower_bound(classes, class_of, width, height)


def wirelength(rects: Mapping[str, Rect], edges: Sequence[TrafficEdge]) -> float:
    """Sum over edges of bytes_per_sample x Manhattan distance between the centres of src's and dst's rect."""
    names = list(rects)
    return _wirelength([rects[n] for n in names], _edge_arrays_by_name(names, edges))


def wirelength_lower_bound(rects: Mapping[str, Rect], edges: Sequence[TrafficEdge]) -> float:
    """A lower bound on the wirelength of every placement of rectangles of these sizes without overlap.

    Two disjoint rectangles are separated along x or along y. If along x, with A's columns before B's,
    B.x >= A.x + A.w, so centre(B).x - centre(A).x = B.x + (B.w-1)/2 - A.x - (A.w-1)/2 >= (A.w + B.w)/2; the
    same holds along y. So every edge's centre distance is at least min((A.w+B.w)/2, (A.h+B.h)/2), attained
    by placing the two side by side along their shorter sides; the bound sums bytes x that over the edges
    (each edge alone can be that short; all of them at once usually cannot).
    """
    names = list(rects)
    return _wirelength_lower_bound([rects[n] for n in names], _edge_arrays_by_name(names, edges))


def validate_rects(rects: Mapping[str, Rect], width: int, height: int) -> None:
    """Raise `CompileError` if a rectangle is empty, leaves the mesh, or overlaps another (naming both)."""
    names = list(rects)
    if not names:
        return
    x0, y0, w, h = (np.array([getattr(rects[n], f) for n in names], dtype=np.int64) for f in "xywh")
    bad = (w < 1) | (h < 1) | (x0 < 0) | (y0 < 0) | (x0 + w > width) | (y0 + h > height)
    if bad.any():
        i = int(np.argmax(bad))
        raise CompileError(f"rectangle '{names[i]}' {_fmt(rects[names[i]])} is empty or outside the "
                           f"{width} x {height} mesh")
    x1, y1 = x0 + w, y0 + h
    # O(n^2) pairwise tests, 512 rectangles against all at a time so memory stays small for thousands.
    for a in range(0, len(names), 512):
        block = slice(a, a + 512)
        ox = np.minimum(x1[block, None], x1[None, :]) - np.maximum(x0[block, None], x0[None, :])
        oy = np.minimum(y1[block, None], y1[None, :]) - np.maximum(y0[block, None], y0[None, :])
        later = np.arange(len(names))[None, :] > np.arange(a, min(a + 512, len(names)))[:, None]
        overlap = (ox > 0) & (oy > 0) & later
        if overlap.any():
            bi, j = (int(v) for v in np.argwhere(overlap)[0])
            i = a + bi
            raise CompileError(f"rectangles '{names[i]}' {_fmt(rects[names[i]])} and '{names[j]}' "
                               f"{_fmt(rects[names[j]])} overlap on {int(ox[bi, j] * oy[bi, j])} PEs")


# ---- inputs and cost models --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Class:
    """Kernels sharing one cost model and min_pes: evaluated once. `name` is the first such kernel's.

    `transposed` classes see the mesh with rows and columns swapped (their cycles are `_Swapped`).
    """

    name: str
    cycles: CycleModel
    min_pes: int
    transposed: bool = False

    def shape(self, w: int, h: int) -> tuple[int, int]:
        """(w, h) as the user sees it."""
        return (h, w) if self.transposed else (w, h)


@dataclass(frozen=True)
class _Swapped:
    """A cost model on the transposed mesh: width and height exchange places."""

    cycles: CycleModel

    def __call__(self, w: np.ndarray, h: np.ndarray) -> np.ndarray:
        return self.cycles(h, w)


def _check_inputs(kernels: Sequence[KernelDemand], edges: Sequence[TrafficEdge], width: int,
                  height: int) -> None:
    if width < 1 or height < 1:
        raise CompileError(f"mesh must have at least one PE, got {width} x {height}")
    names = [k.name for k in kernels]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise CompileError(f"kernel name '{dup}' is used twice")
    for k in kernels:
        if k.min_pes < 1:
            raise CompileError(f"kernel '{k.name}' has min_pes {k.min_pes}; it must be >= 1")
    total = sum(k.min_pes for k in kernels)
    if total > width * height:
        top = ", ".join(f"{k.name} {k.min_pes:,}" for k in sorted(kernels, key=lambda k: -k.min_pes)[:3])
        short = total - width * height
        raise CompileError(
            f"kernels need {total:,} PEs to hold their weights but the {width} x {height} mesh has "
            f"{width * height:,}: short by {short:,} PE{'s' if short > 1 else ''} "
            f"({100 * short / (width * height):.1f}%; largest: {top}); use a larger mesh or streaming mode")
    known = set(names)
    for e in edges:
        if e.src not in known or e.dst not in known:
            missing = e.src if e.src not in known else e.dst
            raise CompileError(f"traffic edge {e.src} -> {e.dst} names unknown kernel '{missing}'")
        if e.src == e.dst:
            raise CompileError(f"traffic edge {e.src} -> {e.dst} connects a kernel to itself")
        if not e.bytes_per_sample >= 0:
            raise CompileError(f"traffic edge {e.src} -> {e.dst} has {e.bytes_per_sample} bytes; "
                               f"must be >= 0")


def _classes(kernels: Sequence[KernelDemand]) -> tuple[list[_Class], list[int]]:
    index: dict[object, int] = {}
    classes: list[_Class] = []
    class_of = []
    for k in kernels:
        try:
            key: object = (k.cycles, k.min_pes)
            hash(key)
        except TypeError:  # an unhashable callable is its own class
            key = (id(k.cycles), k.min_pes)
        if key not in index:
            index[key] = len(classes)
            classes.append(_Class(k.name, k.cycles, k.min_pes))
        class_of.append(index[key])
    return classes, class_of


def _eval(c: _Class, w: np.ndarray | int, h: np.ndarray | int, check: bool = True) -> np.ndarray:
    """Cycles of class `c` on w x h rectangles (broadcast), inf where the weights do not fit.

    `check=False` skips the NaN and sign checks, for searches over shapes the tables have already checked.
    """
    w, h = np.broadcast_arrays(np.asarray(w, dtype=np.int64), np.asarray(h, dtype=np.int64))
    cycles = np.broadcast_to(np.asarray(c.cycles(w, h), dtype=np.float64), w.shape)
    if check and (np.isnan(cycles).any() or (cycles < 0).any()):
        i = np.unravel_index(int(np.argmax(np.isnan(cycles) | (cycles < 0))), w.shape)
        cw, ch = c.shape(int(w[i]), int(h[i]))
        raise CompileError(f"cost model of kernel '{c.name}' returned {cycles[i]} cycles for a "
                           f"{cw} x {ch} rectangle; cycles must be >= 0 (inf for an unusable shape)")
    return np.where(w * h >= c.min_pes, cycles, np.inf)


def _cycles(classes: list[_Class], class_of: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Cycles of every kernel on its w x h rectangle, one cost-model call per class."""
    out = np.empty(class_of.size)
    for c in np.unique(class_of):
        mine = class_of == c
        out[mine] = _eval(classes[c], w[mine], h[mine])
    return out


def _stage_cycles(rects: Sequence[Rect], classes: list[_Class], class_of: np.ndarray) -> np.ndarray:
    g = np.array([(r.w, r.h) for r in rects], dtype=np.int64).reshape(-1, 2)
    return _cycles(classes, class_of, g[:, 0], g[:, 1])


def _check_monotone(c: _Class, cycles: np.ndarray, axis: int, sizes: np.ndarray, other: np.ndarray,
                    what: str) -> None:
    """Fail fast if more PEs along `axis` ever cost more cycles: the search and the bounds rely on it."""
    prev, nxt = np.delete(cycles, -1, axis=axis), np.delete(cycles, 0, axis=axis)
    worse = nxt > prev * (1 + 1e-9) + 1e-9  # inf after a finite value is a violation too
    if worse.any():
        i = np.unravel_index(int(np.argmax(worse)), worse.shape)
        a, b = int(sizes[i[axis]]), int(sizes[i[axis] + 1])
        o = int(other[i[1 - axis]])
        small, big = ((a, o), (b, o)) if what == "w" else ((o, a), (o, b))
        small, big = c.shape(*small), c.shape(*big)
        raise CompileError(
            f"cost model of kernel '{c.name}' is slower on more PEs: cycles{big} = {nxt[i]:.6g} > "
            f"cycles{small} = {prev[i]:.6g}; report the best tiling that fits inside w x h (idle PEs) "
            f"instead")


# ---- the stage lower bound ---------------------------------------------------------------------------------


def _min_area(c: _Class, t: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each target in `t`: the least area w*h with cycles <= target, and one (w, h) attaining it.

    For every w a vectorised binary search finds the least h (cycles are non-increasing in h); inf if none.
    """
    w = np.arange(1, width + 1, dtype=np.int64)[:, None]
    lo = np.broadcast_to(np.clip(-(-c.min_pes // w), 1, height + 1), (width, t.size)).copy()
    hi = np.full((width, t.size), height + 1, dtype=np.int64)
    while True:
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        ok = _eval(c, w, np.minimum(mid, height), check=False) <= t[None, :]
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid + 1, lo)
    area = np.where(lo <= height, w * lo, np.iinfo(np.int64).max)
    best = np.argmin(area, axis=0)
    cols = np.arange(t.size)
    found = area[best, cols] < np.iinfo(np.int64).max
    return np.where(found, area[best, cols], np.inf), best + 1, lo[best, cols]


def _stage_lower_bound(classes: list[_Class], class_of: list[int], width: int, height: int) -> float:
    counts = np.bincount(np.asarray(class_of), minlength=len(classes))
    mesh = width * height
    for c in classes:  # the searches below skip checks: check every model on a sample of shapes first
        _shelf_tables(c, width, height, sorted({max(1, height // n) for n in (1, 2, 3, 5, 8, 13, 21, 34)}))

    def fits(t: np.ndarray) -> np.ndarray:
        areas = (n * _min_area(c, t, width, height)[0] for c, n in zip(classes, counts, strict=True))
        return sum(areas) <= mesh

    t_any = np.array([_T_INFINITE])
    smallest = []
    for c in classes:
        area, w, h = _min_area(c, t_any, width, height)
        if not np.isfinite(area[0]):
            raise CompileError(f"kernel '{c.name}' has no usable rectangle on the {width} x {height} mesh "
                               f"(its cost model is inf for every shape holding {c.min_pes:,} PEs)")
        smallest.append((area[0], float(_eval(c, w[0], h[0]))))
    need = sum(n * a for (a, _), n in zip(smallest, counts, strict=True))
    if need > mesh:
        raise CompileError(f"the kernels' smallest usable rectangles cover {int(need):,} PEs but the "
                           f"{width} x {height} mesh has {mesh:,}: short by {int(need) - mesh:,} PEs")
    lo = max(float(_eval(c, width, height)) for c in classes)  # no kernel beats its time on the whole mesh
    hi = max(t for _, t in smallest)  # every kernel at its smallest rectangle: fits, by the check above
    if fits(np.array([lo]))[0]:
        return lo
    lo, hi = _bracket(fits, max(lo, hi * 1e-15), hi, rel=1e-5)
    # The least T is some kernel's cycles on some shape: the slowest of the shapes that fit at hi. If the
    # condition fails just below it, that is the least T exactly; otherwise lo is still a bound.
    exact = max(float(_eval(c, w[0], h[0])) for c in classes
                for _, w, h in [_min_area(c, np.array([hi]), width, height)])
    if lo < exact <= hi and not fits(np.array([np.nextafter(exact, 0.0)]))[0]:
        return exact
    return lo


def _bracket(feasible: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, rel: float,
             points: int = 15) -> tuple[float, float]:
    """Shrink [lo, hi] with feasible(lo) False and feasible(hi) True (monotone) to hi/lo <= 1 + rel."""
    while hi > lo * (1 + rel):
        ts = np.geomspace(lo, hi, points + 2)[1:-1]
        ok = np.asarray(feasible(ts))
        if ok.any():
            first = int(np.argmax(ok))
            hi, lo = float(ts[first]), (float(ts[first - 1]) if first else lo)
        else:
            lo = float(ts[-1])
    return lo, hi


# ---- shelf packing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ShelfTable:
    """Cycles of one class on shelves: `shelf[i, w-1]` at height heights[i], `band[h-1]` at full width."""

    shelf: np.ndarray
    band: np.ndarray


def _shelf_tables(c: _Class, width: int, height: int, heights: list[int]) -> _ShelfTable:
    ws = np.arange(1, width + 1)
    hs = np.asarray(heights)
    shelf = _eval(c, ws[None, :], hs[:, None])
    _check_monotone(c, shelf, 1, ws, hs, "w")
    _check_monotone(c, shelf, 0, hs, ws, "h")
    band = _eval(c, width, np.arange(1, height + 1))
    _check_monotone(c, band[None, :], 1, np.arange(1, height + 1), np.array([width]), "h")
    return _ShelfTable(shelf, band)


def _next_fit(widths: np.ndarray, bands: np.ndarray, shelf: int, width: int,
              height: int) -> tuple[int, ...] | None:
    """Kernels in order into shelves of height `shelf`, a too-wide kernel alone in a full-width band.

    Returns the row boundaries (first kernel of each row, then n), or None if the rows overflow the mesh.
    """
    n = widths.size
    wide = widths > width
    csum = np.concatenate(([0], np.cumsum(np.where(wide, 0, widths)))).tolist()
    next_wide = np.append(np.minimum.accumulate(np.where(wide, np.arange(n), n)[::-1])[::-1], n).tolist()
    wide_at, band_rows = wide.tolist(), bands.tolist()
    starts = []
    k = filled = 0
    while k < n:
        starts.append(k)
        if wide_at[k]:
            filled += band_rows[k]
            k += 1
        else:
            k = min(bisect.bisect_right(csum, csum[k] + width) - 1, next_wide[k])
            filled += shelf
        if filled > height:
            return None
    return (*starts, n)


def _shelf_structures(tables: list[_ShelfTable], class_of: np.ndarray, width: int, height: int,
                      heights: list[int], t_lb: float) -> list[tuple[float, tuple[int, ...]]]:
    """For each shelf height: the least target (to 0.1%) at which next-fit packs, and its row boundaries.

    Empty if no shelf height packs at any target.
    """

    shelves = np.stack([tb.shelf for tb in tables])
    bands = np.stack([tb.band for tb in tables])

    def pack(i: int, t: float) -> tuple[int, ...] | None:
        w = (shelves[:, i, :] > t).sum(axis=1) + 1  # cycles fall along w: the count above t is the width - 1
        b = (bands > t).sum(axis=1) + 1
        return _next_fit(w[class_of], b[class_of], heights[i], width, height)

    rng = range(len(heights))
    top = t_lb if t_lb > 0 else 1.0
    while not any(pack(i, top) for i in rng):
        top *= 2
        if top > _T_INFINITE / 4:
            top = _T_INFINITE
            if not any(pack(i, top) for i in rng):
                return []  # not even with every kernel at its smallest shape
            break
    found: dict[tuple[int, ...], float] = {}
    for i in rng:
        hi = next((t for t in (top, top * 2, top * 4) if t <= _T_INFINITE and pack(i, t)), None)
        if hi is None:
            continue
        lo = t_lb
        if pack(i, lo):
            hi = lo
        while hi > lo * (1 + 1e-3):
            mid = math.sqrt(lo * hi) if lo > 0 else hi / 2
            lo, hi = (lo, mid) if pack(i, mid) else (mid, hi)
        rows = pack(i, hi)
        assert rows is not None
        found[rows] = min(hi, found.get(rows, hi))
    return [(t, rows) for rows, t in found.items()]


def _row_layouts(classes: list[_Class], class_of: np.ndarray, width: int, height: int, t_lb: float, e: _Edges,
                 slack: float, max_shelves: int) -> list[tuple[float, float, list[Rect]]]:
    """Row layouts worth considering: (slowest stage, wirelength, rects) for each distinct row structure."""
    heights = sorted({height // n for n in range(1, min(height, max_shelves) + 1)})
    tables = [_shelf_tables(c, width, height, heights) for c in classes]
    structures = _shelf_structures(tables, class_of, width, height, heights, t_lb)
    if not structures:
        return []
    sizer = _RowSizer(classes, class_of, width, height)
    laid = []
    for sized in _size_structures(structures, sizer, t_lb, slack):
        rects = _layout(sized, classes, class_of, width, height)
        laid.append((float(_stage_cycles(rects, classes, class_of).max()), _wirelength(rects, e), rects))
    return laid


# ---- sizing a fixed row structure --------------------------------------------------------------------------


def _min_widths(c: _Class, t: np.ndarray, width: int, height: int) -> np.ndarray:
    """Least width with cycles <= t[i] at each height h (shape (len(t), H)); width + 1 where none."""
    h = np.arange(1, height + 1, dtype=np.int64)[None, :]
    lo = np.broadcast_to(np.clip(-(-c.min_pes // h), 1, width + 1), (t.size, height)).copy()
    hi = np.full((t.size, height), width + 1, dtype=np.int64)
    while True:
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        ok = _eval(c, np.minimum(mid, width), h, check=False) <= t[:, None]
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid + 1, lo)
    return lo


@dataclass(frozen=True)
class _Sized:
    """A row structure sized for target `t`: each row's height and each kernel's width."""

    t: float
    rows: tuple[int, ...]
    row_h: np.ndarray
    widths: np.ndarray


class _RowSizer:
    """Sizes row structures exactly for a grid of targets, sharing the per-class width tables.

    A row of kernels at height h needs sum_k w_k(T, h) columns, non-increasing in h, so its least height
    h_r(T) is the first h where that fits; the structure fits at T iff sum_r h_r(T) <= H, monotone in T.
    """

    def __init__(self, classes: list[_Class], class_of: np.ndarray, width: int, height: int) -> None:
        self.classes, self.class_of, self.width, self.height = classes, class_of, width, height

    def tables(self, t: np.ndarray) -> np.ndarray:
        out = np.zeros((len(self.classes), t.size, self.height), dtype=np.float32)
        for c in np.unique(self.class_of):
            out[c] = _min_widths(self.classes[c], t, self.width, self.height)
        return out

    def row_heights(self, rows: tuple[int, ...], table: np.ndarray) -> np.ndarray:
        """(rows, targets) least row heights; height + 1 where a row cannot fit."""
        row_of = np.repeat(np.arange(len(rows) - 1), np.diff(rows))
        counts = np.zeros((len(rows) - 1, len(self.classes)), dtype=np.float32)
        np.add.at(counts, (row_of, self.class_of), 1)
        present = np.flatnonzero(counts.any(axis=0))
        counts, table = counts[:, present, None], table[present]
        cls, tgt = np.arange(present.size)[None, :, None], np.arange(table.shape[1])[None, None, :]
        lo = np.ones((len(rows) - 1, table.shape[1]), dtype=np.int64)
        hi = np.full_like(lo, self.height + 1)
        # A row's need falls as it gets taller: binary search every (row, target) pair at once.
        while (active := lo < hi).any():
            mid = (lo + hi) // 2
            need = (counts * table[cls, tgt, np.minimum(mid, self.height)[:, None, :] - 1]).sum(axis=1)
            fits = need <= self.width
            hi = np.where(active & fits, mid, hi)
            lo = np.where(active & ~fits, mid + 1, lo)
        return lo

    def first_fit(self, rows: tuple[int, ...], table: np.ndarray) -> int:
        """Index of the first target at which the structure fits (len if none)."""
        ok = self.row_heights(rows, table).sum(axis=0) <= self.height
        return int(np.argmax(ok)) if ok.any() else ok.size

    def sized(self, rows: tuple[int, ...], table: np.ndarray, t: np.ndarray, j: int) -> _Sized:
        row_h = self.row_heights(rows, table[:, j:j + 1])[:, 0]
        per_kernel_h = np.repeat(row_h, np.diff(rows))
        widths = table[self.class_of, j, per_kernel_h - 1].astype(np.int64)
        return _Sized(float(t[j]), rows, row_h, widths)


def _size_structures(structures: list[tuple[float, tuple[int, ...]]], sizer: _RowSizer, t_lb: float,
                     slack: float) -> list[_Sized]:
    """Each structure sized at its least target: a coarse grid for all, then a fine one for the contenders."""
    top = max(t for t, _ in structures)
    grid = np.geomspace(max(t_lb, top * 1e-12), top, 24) if top > t_lb else np.array([top])
    grid[-1] = top  # every structure fits at its own target, so all of them fit here
    coarse = sizer.tables(grid)
    first = [sizer.first_fit(rows, coarse) for _, rows in structures]
    best = min(grid[j] for j in first if j < grid.size)
    contenders = [(j, rows) for j, (_, rows) in zip(first, structures, strict=True)
                  if j < grid.size and grid[max(j - 1, 0)] <= best * (1 + slack)]
    out = []
    for j in sorted({j for j, _ in contenders}):
        fine = np.geomspace(grid[j - 1], grid[j], 17)[1:] if j > 0 else grid[:1]
        table = sizer.tables(fine)
        for jj, rows in contenders:
            if jj == j:
                k = sizer.first_fit(rows, table)
                out.append(sizer.sized(rows, table, fine, min(k, fine.size - 1)))
    return out


def _layout(s: _Sized, classes: list[_Class], class_of: np.ndarray, width: int, height: int) -> list[Rect]:
    """Spend spare rows and columns on the slowest kernels, then stack rows north to south, serpentine."""
    widths = s.widths.copy()
    row_h = s.row_h.copy()
    counts = np.diff(s.rows)
    row_of = np.repeat(np.arange(counts.size), counts)
    cycles = _cycles(classes, class_of, widths, row_h[row_of])
    row_h[row_of[int(np.argmax(cycles))]] += height - int(row_h.sum())
    cycles = _cycles(classes, class_of, widths, row_h[row_of])
    rects = []
    y = 0
    for r, (a, b) in enumerate(zip(s.rows[:-1], s.rows[1:], strict=True)):
        widths[a + int(np.argmax(cycles[a:b]))] += width - int(widths[a:b].sum())
        x = 0 if r % 2 == 0 else width
        for w in widths[a:b].tolist():
            x -= w if r % 2 else 0
            rects.append(Rect(x, y, w, int(row_h[r])))
            x += 0 if r % 2 else w
        y += int(row_h[r])
    return rects


# ---- wirelength --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Edges:
    src: np.ndarray
    dst: np.ndarray
    nbytes: np.ndarray


def _edge_arrays(kernels: Sequence[KernelDemand], edges: Sequence[TrafficEdge]) -> _Edges:
    return _edge_arrays_by_name([k.name for k in kernels], edges)


def _edge_arrays_by_name(names: list[str], edges: Sequence[TrafficEdge]) -> _Edges:
    index = {n: i for i, n in enumerate(names)}
    for e in edges:
        if e.src not in index or e.dst not in index:
            missing = e.src if e.src not in index else e.dst
            raise CompileError(f"traffic edge {e.src} -> {e.dst} names '{missing}', which has no rectangle")
    return _Edges(np.array([index[e.src] for e in edges], dtype=np.int64),
                  np.array([index[e.dst] for e in edges], dtype=np.int64),
                  np.array([e.bytes_per_sample for e in edges], dtype=np.float64))


def _geometry(rects: Sequence[Rect]) -> np.ndarray:
    return np.array([(r.x, r.y, r.w, r.h) for r in rects], dtype=np.float64).reshape(-1, 4)


def _wirelength_of(g: np.ndarray, e: _Edges) -> float:
    cx = g[:, 0] + (g[:, 2] - 1) / 2
    cy = g[:, 1] + (g[:, 3] - 1) / 2
    return float(np.sum(e.nbytes * (np.abs(cx[e.src] - cx[e.dst]) + np.abs(cy[e.src] - cy[e.dst]))))


def _wirelength(rects: Sequence[Rect], e: _Edges) -> float:
    return _wirelength_of(_geometry(rects), e)


def _wirelength_lower_bound(rects: Sequence[Rect], e: _Edges) -> float:
    g = _geometry(rects)
    side_by_side = (g[e.src, 2] + g[e.dst, 2]) / 2
    stacked = (g[e.src, 3] + g[e.dst, 3]) / 2
    return float(np.sum(e.nbytes * np.minimum(side_by_side, stacked)))


def _improve_wirelength(rects: list[Rect], e: _Edges, width: int, passes: int = 4) -> list[Rect]:
    """Mirror whole rows and swap neighbours within a row while the wirelength falls (sizes never change)."""
    g = _geometry(rects)
    rows: dict[int, list[int]] = {}
    for i, r in enumerate(rects):
        rows.setdefault(r.y, []).append(i)
    members = [sorted(m, key=lambda i: g[i, 0]) for _, m in sorted(rows.items())]
    incident: list[list[tuple[int, float]]] = [[] for _ in rects]  # (other end, bytes) per kernel
    for s, d, b in zip(e.src.tolist(), e.dst.tolist(), e.nbytes.tolist(), strict=True):
        incident[s].append((d, b))
        incident[d].append((s, b))
    cx = (g[:, 0] + (g[:, 2] - 1) / 2).tolist()
    cy = (g[:, 1] + (g[:, 3] - 1) / 2).tolist()

    def cost(moved: dict[int, float]) -> float:
        """Wirelength of the edges touching `moved` kernels, with their centres' x replaced."""
        total = 0.0
        for i, x in moved.items():
            for j, b in incident[i]:
                if j in moved and j < i:
                    continue  # counted from j's side
                total += b * (abs(x - moved.get(j, cx[j])) + abs(cy[i] - cy[j]))
        return total

    best = _wirelength_of(g, e)
    for _ in range(passes):
        improved = False
        for m in members:
            before = {i: cx[i] for i in m}
            mirrored = {i: width - 1 - cx[i] for i in m}  # x -> W - x - w maps the centre to W - 1 - centre
            if cost(mirrored) < cost(before) - 1e-9:
                for i in m:
                    g[i, 0] = width - g[i, 0] - g[i, 2]
                    cx[i] = mirrored[i]
                m.reverse()
                improved = True
            for j in range(len(m) - 1):
                a, b = m[j], m[j + 1]  # a is west of b and they touch
                xb, xa = g[a, 0], g[a, 0] + g[b, 2]
                swapped = {a: xa + (g[a, 2] - 1) / 2, b: xb + (g[b, 2] - 1) / 2}
                if cost(swapped) < cost({a: cx[a], b: cx[b]}) - 1e-9:
                    g[a, 0], g[b, 0] = xa, xb
                    cx[a], cx[b] = swapped[a], swapped[b]
                    m[j], m[j + 1] = b, a
                    improved = True
        if not improved:
            break
    assert _wirelength_of(g, e) <= best + 1e-6 * max(best, 1.0)
    return [Rect(int(x), int(y), int(w), int(h)) for x, y, w, h in g]


def _fmt(r: Rect) -> str:
    return f"(x={r.x}, y={r.y}, w={r.w}, h={r.h})"

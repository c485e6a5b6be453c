"""Kernel sizing and placement: quality against the lower bounds, the bounds against brute force, errors."""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np
import pytest

from cgpt.backends.mesh.placement import (
    KernelDemand,
    Placement,
    Rect,
    TiledCycles,
    TrafficEdge,
    WorkCycles,
    place_kernels,
    stage_lower_bound,
    validate_rects,
    wirelength,
    wirelength_lower_bound,
)
from cgpt.backends.mesh.target import preset
from cgpt.ir.diagnostics import CompileError


def gpt_chain(
    layers: int, d: int, d_ff: int, vocab: int = 50257, seq: int = 128, flops_per_cycle: float = 8.0,
    usable: int = 43_008,
) -> tuple[list[KernelDemand], list[TrafficEdge]]:
    """A GPT-2-like pipelined chain: embedding, per layer 9 fused kernels, final layer norm and lm_head.

    Work is FLOPs / FLOP per cycle per PE (linear: 2 * seq * K * N); min_pes: f16 weight bytes / usable SRAM.
    """
    kernels: list[KernelDemand] = []
    act = seq * d * 2

    def kernel(name: str, flops: float, weight_bytes: int) -> None:
        min_pes = max(1, -(-weight_bytes // usable))
        kernels.append(KernelDemand(name, WorkCycles(work=flops / flops_per_cycle), min_pes))

    def linear(name: str, k: int, n: int) -> None:
        kernel(name, 2 * seq * k * n, (k * n + n) * 2)

    kernel("embed", seq * d, (vocab + 2048) * d * 2)
    edges = []
    x = "embed"
    for i in range(layers):
        p = f"h{i}."
        kernel(p + "ln1", 8 * seq * d, 4 * d)
        linear(p + "qkv", d, 3 * d)
        kernel(p + "attn", 4 * seq * seq * d, 0)
        linear(p + "proj", d, d)
        kernel(p + "add1", seq * d, 0)
        kernel(p + "ln2", 8 * seq * d, 4 * d)
        linear(p + "fc1", d, d_ff)
        linear(p + "fc2", d_ff, d)
        kernel(p + "add2", seq * d, 0)
        edges += [TrafficEdge(x, p + "ln1", act), TrafficEdge(p + "ln1", p + "qkv", act),
                  TrafficEdge(p + "qkv", p + "attn", 3 * act), TrafficEdge(p + "attn", p + "proj", act),
                  TrafficEdge(p + "proj", p + "add1", act), TrafficEdge(x, p + "add1", act),
                  TrafficEdge(p + "add1", p + "ln2", act), TrafficEdge(p + "ln2", p + "fc1", act),
                  TrafficEdge(p + "fc1", p + "fc2", act * d_ff // d), TrafficEdge(p + "fc2", p + "add2", act),
                  TrafficEdge(p + "add1", p + "add2", act)]
        x = p + "add2"
    kernel("ln_f", 8 * seq * d, 4 * d)
    linear("lm_head", d, vocab)
    edges += [TrafficEdge(x, "ln_f", act), TrafficEdge("ln_f", "lm_head", act)]
    return kernels, edges


def _check_placement(p: Placement, kernels: list[KernelDemand], width: int, height: int) -> None:
    validate_rects(p.rects, width, height)
    assert set(p.rects) == {k.name for k in kernels}
    for k in kernels:
        r = p.rects[k.name]
        assert r.area >= k.min_pes
        assert p.stage_cycles[k.name] == pytest.approx(float(k.cycles(np.array([r.w]), np.array([r.h]))[0]))
    assert p.stage_cycles_max == pytest.approx(max(p.stage_cycles.values()))
    assert p.stage_cycles_max >= p.stage_cycles_lower_bound
    assert p.wirelength >= p.wirelength_lower_bound


def test_gpt2_111m_like_chain_on_wse2_is_within_the_quality_targets() -> None:
    t = preset("wse2")
    kernels, edges = gpt_chain(10, 768, 3072)
    start = time.perf_counter()
    p = place_kernels(kernels, edges, t.width, t.height)
    elapsed = time.perf_counter() - start
    _check_placement(p, kernels, t.width, t.height)
    assert len(kernels) == 93
    assert p.stage_ratio <= 1.25
    assert p.wirelength_ratio <= 2.0
    # total work / total PEs is the bound for pure-work kernels; lm_head alone needs a third of the wafer.
    total_work = sum(k.cycles.work for k in kernels)  # type: ignore[attr-defined]
    assert p.stage_cycles_lower_bound == pytest.approx(total_work / t.pes, rel=0.02)
    assert elapsed < 10


def test_13b_like_chain_of_40_layers_on_wse3_is_fast_and_near_its_bound() -> None:
    t = preset("wse3")
    kernels, edges = gpt_chain(40, 5120, 20480, flops_per_cycle=16.0)
    start = time.perf_counter()
    p = place_kernels(kernels, edges, t.width, t.height)
    elapsed = time.perf_counter() - start
    _check_placement(p, kernels, t.width, t.height)
    assert len(kernels) == 363
    assert p.stage_ratio <= 1.25
    assert p.wirelength_ratio <= 2.0
    assert elapsed < 15


def test_tiny_model_on_mesh_64x64() -> None:
    t = preset("mesh-64x64")
    kernels, edges = gpt_chain(2, 64, 256, vocab=512, seq=16)
    p = place_kernels(kernels, edges, t.width, t.height)
    _check_placement(p, kernels, t.width, t.height)
    assert p.stage_ratio <= 1.25
    assert p.wirelength_ratio <= 2.5


def test_weights_that_do_not_fit_raise_saying_by_how_much() -> None:
    kernels = [KernelDemand(f"k{i}", WorkCycles(1000.0), min_pes=100) for i in range(3)]
    with pytest.raises(CompileError, match=r"need 300 PEs .* 16 x 16 mesh has 256: short by 44 PEs \(17.2%"):
        place_kernels(kernels, [], 16, 16)
    with pytest.raises(CompileError, match="short by 44 PEs"):
        stage_lower_bound(kernels, 16, 16)


def test_a_kernel_too_big_for_the_mesh_is_reported() -> None:
    # 40 PEs fit a 16 x 16 mesh by count, but with inf cycles below 17 columns no rectangle is usable.
    def wide_only(w: np.ndarray, h: np.ndarray) -> np.ndarray:
        return np.where(w >= 17, 1.0, np.inf)

    with pytest.raises(CompileError, match="kernel 'wide' has no usable rectangle"):
        place_kernels([KernelDemand("wide", wide_only, 40)], [], 16, 16)


def test_cost_model_that_slows_down_on_more_pes_is_rejected() -> None:
    with pytest.raises(CompileError, match=r"kernel 'bad' is slower on more PEs: cycles\(2, 1\)"):
        place_kernels([KernelDemand("bad", lambda w, h: w * 1.0 + 100.0 / h)], [], 8, 8)


def test_a_shape_the_model_cannot_use_after_one_it_can_is_rejected() -> None:
    def even_widths_only(w: np.ndarray, h: np.ndarray) -> np.ndarray:
        return np.where(w % 2 == 0, 100.0 / (w * h), np.inf)

    with pytest.raises(CompileError, match=r"kernel 'even' is slower on more PEs: cycles\(3, 1\) = inf"):
        place_kernels([KernelDemand("even", even_widths_only)], [], 8, 8)


def test_tiled_kernels_run_their_best_tiling_and_leave_the_rest_idle() -> None:
    tiled = TiledCycles(WorkCycles(work=4096.0), widths=(1, 2, 4, 8, 16), heights=(1, 3, 9), min_pes=4)
    kernels = [KernelDemand("a", WorkCycles(work=2000.0)), KernelDemand("t", tiled, min_pes=4),
               KernelDemand("b", WorkCycles(work=500.0))]
    edges = [TrafficEdge("a", "t", 1.0), TrafficEdge("t", "b", 1.0)]
    p = place_kernels(kernels, edges, 20, 12)
    _check_placement(p, kernels, 20, 12)
    r = p.rects["t"]
    used_w = max(v for v in (1, 2, 4, 8, 16) if v <= r.w)
    used_h = max(v for v in (1, 3, 9) if v <= r.h)
    assert p.stage_cycles["t"] == 4096.0 / (used_w * used_h)
    assert p.stage_ratio <= 1.5


def test_no_packing_in_dataflow_order_is_a_compile_error() -> None:
    # Three kernels that each need 2 x 2 fit a 4 x 3 mesh by area, not as rectangles.
    def two_by_two(w: np.ndarray, h: np.ndarray) -> np.ndarray:
        return np.where((w >= 2) & (h >= 2), 1.0, np.inf)

    kernels = [KernelDemand(f"k{i}", two_by_two) for i in range(3)]
    with pytest.raises(CompileError, match="no row or column packing of the 3 kernels .* the 4 x 3 mesh"):
        place_kernels(kernels, [], 4, 3)


def test_bad_inputs_are_compile_errors() -> None:
    k = [KernelDemand("a", WorkCycles(10.0)), KernelDemand("b", WorkCycles(10.0))]
    with pytest.raises(CompileError, match="names unknown kernel 'c'"):
        place_kernels(k, [TrafficEdge("a", "c", 1.0)], 8, 8)
    with pytest.raises(CompileError, match="connects a kernel to itself"):
        place_kernels(k, [TrafficEdge("a", "a", 1.0)], 8, 8)
    with pytest.raises(CompileError, match="kernel name 'a' is used twice"):
        place_kernels([k[0], k[0]], [], 8, 8)


def test_placement_is_deterministic_and_uses_the_whole_mesh() -> None:
    kernels, edges = gpt_chain(2, 64, 256, vocab=512, seq=16)
    a = place_kernels(kernels, edges, 64, 64)
    b = place_kernels(kernels, edges, 64, 64)
    assert a == b
    assert a.utilization == 1.0


def test_unhashable_cost_models_still_place() -> None:
    @dataclasses.dataclass  # eq without frozen: instances are unhashable
    class Model:
        work: float

        def __call__(self, w: np.ndarray, h: np.ndarray) -> np.ndarray:
            return self.work / (w * h)

    kernels = [KernelDemand(f"k{i}", Model(100.0 * (i + 1))) for i in range(4)]
    edges = [TrafficEdge(f"k{i}", f"k{i + 1}", 10.0) for i in range(3)]
    p = place_kernels(kernels, edges, 10, 10)
    _check_placement(p, kernels, 10, 10)
    # work 1000 over 100 PEs is 10 cycles; the four kernels share the mesh in proportion to their work.
    assert p.stage_cycles_lower_bound == pytest.approx(10.0, rel=1e-6)


def test_wirelength_is_bytes_times_centre_distance_and_bound_is_the_closest_disjoint_fit() -> None:
    rects = {"a": Rect(0, 0, 2, 3), "b": Rect(5, 1, 2, 3)}
    edges = [TrafficEdge("a", "b", 10.0)]
    # centres (0.5, 1) and (5.5, 2): distance 5 + 1.
    assert wirelength(rects, edges) == 60.0
    # side by side along x the centres are (2 + 2) / 2 = 2 apart; stacked along y, (3 + 3) / 2 = 3.
    assert wirelength_lower_bound(rects, edges) == 20.0
    touching = {"a": Rect(0, 0, 2, 3), "b": Rect(2, 0, 2, 3)}
    assert wirelength(touching, edges) == wirelength_lower_bound(touching, edges) == 20.0


def test_validate_rects_names_both_overlapping_rectangles() -> None:
    with pytest.raises(CompileError, match=r"rectangles 'qkv' \(x=0, y=0, w=4, h=4\) and 'attn' "
                                           r"\(x=2, y=2, w=4, h=4\) overlap on 4 PEs"):
        validate_rects({"qkv": Rect(0, 0, 4, 4), "attn": Rect(2, 2, 4, 4)}, 8, 8)
    with pytest.raises(CompileError, match=r"rectangle 'fc1' \(x=6, y=0, w=4, h=1\) is empty or outside"):
        validate_rects({"fc1": Rect(6, 0, 4, 1)}, 8, 8)
    validate_rects({"a": Rect(0, 0, 4, 4), "b": Rect(4, 0, 4, 4), "c": Rect(0, 4, 8, 4)}, 8, 8)


def test_validate_rects_handles_hundreds_of_rectangles() -> None:
    rects = {f"r{i}": Rect(i % 30, i // 30, 1, 1) for i in range(900)}
    validate_rects(rects, 30, 30)
    rects["dup"] = Rect(29, 29, 1, 1)
    with pytest.raises(CompileError, match="'r899' .* and 'dup'"):
        validate_rects(rects, 30, 30)


# ---- the lower bounds against brute force ---------------------------------------------------------------


def _all_rects(width: int, height: int) -> list[Rect]:
    return [Rect(x, y, w, h) for w in range(1, width + 1) for h in range(1, height + 1)
            for x in range(width - w + 1) for y in range(height - h + 1)]


def _bits(r: Rect, width: int) -> int:
    return sum(1 << (y * width + x) for x in range(r.x, r.x_end) for y in range(r.y, r.y_end))


def _optimal_stage(kernels: list[KernelDemand], width: int, height: int) -> float:
    """Exhaustive: the least slowest stage over every placement of the kernels without overlap."""
    rects = _all_rects(width, height)
    bits = np.array([_bits(r, width) for r in rects], dtype=np.int64)
    sizes = np.array([(r.w, r.h) for r in rects])
    cycles = [np.where(sizes[:, 0] * sizes[:, 1] >= k.min_pes, k.cycles(sizes[:, 0], sizes[:, 1]), np.inf)
              for k in kernels]
    grids = np.meshgrid(*[np.arange(len(rects))] * len(kernels), indexing="ij")
    ok = np.ones(grids[0].shape, dtype=bool)
    for i, j in itertools.combinations(range(len(kernels)), 2):
        ok &= (bits[grids[i]] & bits[grids[j]]) == 0
    stage = np.max([c[g] for c, g in zip(cycles, grids, strict=True)], axis=0)
    return float(stage[ok].min())


def _optimal_wirelength(sizes: list[tuple[int, int]], edges: list[tuple[int, int, float]], width: int,
                        height: int) -> float:
    """Exhaustive: the least wirelength of rectangles of these sizes without overlap."""
    best = np.inf
    choices = [[Rect(x, y, w, h) for x in range(width - w + 1) for y in range(height - h + 1)]
               for w, h in sizes]
    for combo in itertools.product(*choices):
        if any(_bits(a, width) & _bits(b, width) for a, b in itertools.combinations(combo, 2)):
            continue
        names = {str(i): r for i, r in enumerate(combo)}
        best = min(best, wirelength(names, [TrafficEdge(str(a), str(b), n) for a, b, n in edges]))
    return float(best)


@pytest.mark.parametrize("seed", range(16))
def test_lower_bounds_never_exceed_the_exhaustive_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(2, 5)), int(rng.integers(2, 4))
    n = 3 if width * height <= 9 else 2
    kernels = []
    for i in range(n):
        model = WorkCycles(work=float(rng.uniform(1, 100)), fixed=float(rng.uniform(0, 5)),
                           span_w=float(rng.uniform(0, 10)), span_h=float(rng.uniform(0, 10)))
        if seed % 4 == 3 and i == 0:  # some kernels only tile on even widths
            model = TiledCycles(model, widths=(2, 4))  # type: ignore[assignment]
        min_pes = int(rng.integers(1, 3)) if width * height >= 6 else 1
        kernels.append(KernelDemand(f"k{i}", model, min_pes))
    edges = [TrafficEdge(f"k{i}", f"k{i + 1}", float(rng.uniform(1, 10))) for i in range(n - 1)]
    optimum = _optimal_stage(kernels, width, height)
    lower = stage_lower_bound(kernels, width, height)
    assert lower <= optimum * (1 + 1e-12)
    p = place_kernels(kernels, edges, width, height)
    _check_placement(p, kernels, width, height)
    assert p.stage_cycles_max >= optimum * (1 - 1e-12)
    sizes = [(p.rects[k.name].w, p.rects[k.name].h) for k in kernels]
    best_wl = _optimal_wirelength(sizes, [(i, i + 1, e.bytes_per_sample) for i, e in enumerate(edges)], width,
                                  height)
    assert p.wirelength_lower_bound <= best_wl + 1e-9
    assert p.wirelength >= best_wl - 1e-9


def test_stage_bound_is_tight_when_work_divides_evenly() -> None:
    # Two kernels of work 32 and 16 on a 4 x 3 mesh: 8 + 4 PEs at 4 cycles each is optimal and fits.
    kernels = [KernelDemand("a", WorkCycles(32.0)), KernelDemand("b", WorkCycles(16.0))]
    assert stage_lower_bound(kernels, 4, 3) == pytest.approx(4.0, rel=1e-8)
    assert _optimal_stage(kernels, 4, 3) == 4.0
    p = place_kernels(kernels, [TrafficEdge("a", "b", 1.0)], 4, 3)
    assert p.stage_cycles_max == 4.0

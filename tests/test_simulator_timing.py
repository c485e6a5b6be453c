"""The simulator's clock: pinned to closed forms on small meshes, agreeing with the compile report, and fast
enough to time the 13B structure on a WSE-3 without reading a weight."""

from __future__ import annotations

import io
import json
import time

import pytest

from cgpt.backends.mesh.kernels import cycles_at
from cgpt.backends.mesh.program import kernel_spec, module_target, target_attr
from cgpt.backends.mesh.sim_timing import time_program
from cgpt.backends.mesh.simulator import simulate
from cgpt.backends.mesh.target import preset
from cgpt.driver import compile_model
from cgpt.ir.core import Module
from cgpt.ir.parser import parse_module
from cgpt.ir.printer import print_module
from tests.models import exported_model

# mesh-16x16 has WSE-2's fabric: 4-byte wavelets, 1-cycle hops, 2-cycle ramps, f32 at 2 FLOP/cycle
HOP, RAMP, WAVELET = 1, 2, 4


def _rect(x: int, y: int, w: int, h: int) -> str:
    return f"#mesh.rect<x = {x}, y = {y}, w = {w}, h = {h}>"


def _program(body: list[str], arg: str, result: str, mode: str = "pipelined", dtype: str = "f32") -> Module:
    """A placed module on mesh-16x16 from mesh-op lines (weights need no data: time never reads them)."""
    text = "\n".join(["module @t {", f"  func @main(%x: {arg}) -> ({result}) {{", *(f"    {line}" for line in body),
                      f"    return %out : {result}", "  }", "}", ""])
    module = parse_module(text)
    module.attributes.update(target=target_attr(preset("mesh-16x16")), mode=mode, dtype=dtype)
    return module


def _linear(k: int, n: int, tokens: int, tw: int, th: int) -> Module:
    a, o, w = f"tensor<1x{tokens}x{k}xf32>", f"tensor<1x{tokens}x{n}xf32>", f"tensor<{k}x{n}xf32>"
    return _program([f'%w = weight "w" : {w}',
                     f"%out = mesh.linear(%x, %w) {{region = {_rect(0, 0, tw, th)}, tiling = #mesh.tiling<w = {tw}, "
                     f"h = {th}>}} : ({a}, {w}) -> {o}"], a, o)


def _residual_chain(tokens: int, features: int, xs: list[int], batch: int = 1) -> Module:
    """One 1x1 residual region at each column of `xs` (row 0), each feeding the next by a transfer."""
    t = f"tensor<{batch}x{tokens}x{features}xf32>"
    nbytes = tokens * features * 4
    body, prev = [], "%x"
    for i, x in enumerate(xs):
        name = "%out" if i == len(xs) - 1 else f"%r{i}"
        if i:
            body.append(f"%t{i} = mesh.transfer({prev}) {{src = {_rect(xs[i - 1], 0, 1, 1)}, "
                        f"dst = {_rect(x, 0, 1, 1)}, bytes = {nbytes}, hops = {x - xs[i - 1]}, color = 0}} "
                        f": ({t}) -> {t}")
            prev = f"%t{i}"
        body.append(f"{name} = mesh.residual({prev}, {prev}) {{region = {_rect(x, 0, 1, 1)}, "
                    f"tiling = #mesh.tiling<w = 1, h = 1>}} : ({t}, {t}) -> {t}")
        prev = name
    arg = f"tensor<{batch}x{tokens}x{features}xf32>"
    return _program(body, arg, t)


def _wavelets(nbytes: int) -> int:
    return -(-nbytes // WAVELET)


def test_chain_reduce_over_p_pes() -> None:
    """A linear one column wide and P rows tall chain-reduces its partial sums down the P rows:
    (P - 1)(2 T_R + hop + 1) + W - 1. With one weight row per PE the chain's latency outlasts the kernel."""
    p, tokens, n = 16, 2, 1
    op = time_program(_linear(p, n, tokens, 1, p)).ops[0]
    w = _wavelets(tokens * n * 4)
    assert op.reduce == (p - 1) * (2 * RAMP + HOP + 1) + w - 1
    assert op.busy == op.reduce > op.kernel


def test_gemm_on_a_k_by_k_block() -> None:
    """A 64 x 64 linear on a 4 x 4 block, 8 tokens: 16 x 16 weights per PE.
    kernel = T max(2 kb nb / F, kb nb s / R, kb s / L, nb 4 / L) + (w + h) hop + 2 T_R (kernels.py);
    broadcast of x along a row of 4: 3 hops + 2 T_R + W - 1; chain reduce down 4 rows: 3 (2 T_R + 2) + W - 1."""
    k, tokens, kb = 4, 8, 16
    op = time_program(_linear(k * kb, k * kb, tokens, k, k)).ops[0]
    per_token = max(2 * kb * kb / 2, kb * kb * 4 / 16, kb * 4 / 4, kb * 4 / 4)
    assert op.kernel == tokens * per_token + (k + k) * HOP + 2 * RAMP
    assert op.broadcast == (k - 1) * HOP + 2 * RAMP + _wavelets(tokens * kb * 4) - 1
    assert op.reduce == (k - 1) * (2 * RAMP + HOP + 1) + _wavelets(tokens * kb * 4) - 1
    assert op.busy == op.kernel
    assert op.pattern == "row broadcast + chain reduce"


def test_one_token_linear_is_a_gemv_with_a_tree_reduce() -> None:
    from cgpt.backends.mesh import collectives
    from cgpt.backends.mesh.sim_timing import fabric_params

    op = time_program(_linear(64, 8, 1, 2, 16)).ops[0]
    assert op.pattern == "row broadcast + tree reduce"
    assert op.reduce == collectives.tree_reduce_cycles(4 * 4, 16, fabric_params(preset("mesh-16x16"), "f32"))


def test_2d_broadcast_over_m_by_n() -> None:
    """An embedding spreads its table over an M x N block, so every PE needs every token id:
    (M + N - 2) hops + 2 T_R + W - 1 for T int64 ids."""
    m, n, tokens = 5, 3, 12
    ids, out, table = f"tensor<1x{tokens}xi64>", f"tensor<1x{tokens}x8xf32>", "tensor<40x8xf32>"
    module = _program([f'%wte = weight "wte" : {table}',
                       f"%out = mesh.embedding(%x, %wte) {{region = {_rect(0, 0, m, n)}, "
                       f"tiling = #mesh.tiling<w = {m}, h = {n}>}} : ({ids}, {table}) -> {out}"], ids, out)
    op = time_program(module).ops[0]
    assert op.broadcast == (m + n - 2) * HOP + 2 * RAMP + _wavelets(tokens * 8) - 1


def test_single_transfer_over_h_hops() -> None:
    """One stream of B bytes, h hops: h hop + 2 T_R + W - 1, and the consumer starts h hop + 2 T_R after."""
    h, tokens, features = 9, 8, 16
    timing = time_program(_residual_chain(tokens, features, [0, h]))
    (x,) = timing.transfers
    w = _wavelets(tokens * features * 4)
    assert (x.hops, x.streams, x.link_bytes) == (h, 1, tokens * features * 4)
    assert x.cycles == h * HOP + 2 * RAMP + w - 1
    assert timing.start[1] == timing.finish[0] + h * HOP + 2 * RAMP
    assert timing.ops[1].transfer_in == w


def test_transfers_sharing_links_contend() -> None:
    """Two transfers along row 0 share the links between x = 1 and x = 8: each sees both on its busiest link."""
    t = "tensor<1x8x16xf32>"
    nbytes = 8 * 16 * 4
    body = []
    for name, x in (("a", 0), ("b", 1)):
        body.append(f"%{name} = mesh.residual(%x, %x) {{region = {_rect(x, 0, 1, 1)}, "
                    f"tiling = #mesh.tiling<w = 1, h = 1>}} : ({t}, {t}) -> {t}")
    for name, src, dst in (("a", 0, 9), ("b", 1, 8)):
        body.append(f"%t{name} = mesh.transfer(%{name}) {{src = {_rect(src, 0, 1, 1)}, "
                    f"dst = {_rect(dst, 0, 1, 1)}, bytes = {nbytes}, hops = {dst - src}, color = 0}} : ({t}) -> {t}")
        body.append(f"%d{name} = mesh.residual(%t{name}, %t{name}) {{region = {_rect(dst, 0, 1, 1)}, "
                    f"tiling = #mesh.tiling<w = 1, h = 1>}} : ({t}, {t}) -> {t}")
    body.append(f"%out = mesh.residual(%da, %db) {{region = {_rect(12, 0, 1, 1)}, "
                f"tiling = #mesh.tiling<w = 1, h = 1>}} : ({t}, {t}) -> {t}")
    timing = time_program(_program(body, t, t))
    shared = [x for x in timing.transfers if x.bytes == nbytes and x.hops in (7, 9)]
    assert len(shared) == 2
    for x in shared:
        assert x.link_bytes == 2 * nbytes
        assert x.cycles == x.hops * HOP + 2 * RAMP + _wavelets(2 * nbytes) - 1


def test_pipeline_fill_then_one_sample_per_slowest_stage() -> None:
    """Three residual stages in a row, batch 3: latency = fill + (B - 1) * slowest stage, the fill being the
    stages plus the two transfers' latencies (hops and ramps)."""
    timing = time_program(_residual_chain(8, 16, [0, 3, 5], batch=3))
    busy = [o.busy for o in timing.ops]
    lat = [x.latency for x in timing.transfers]
    assert lat == [3 * HOP + 2 * RAMP, 2 * HOP + 2 * RAMP]
    assert timing.fill == sum(busy) + sum(lat)
    assert timing.period == max(busy)
    assert timing.latency == timing.fill + 2 * timing.period
    assert timing.critical_path == (0, 1, 2)


def test_streaming_runs_ops_in_turn_each_bound_by_compute_or_weights() -> None:
    """One token through a 128 x 128 linear: its 64 KiB of weights take longer to stream (150 GB/s at 850 MHz)
    than the 8 x 8 block takes to use them."""
    module = _linear(128, 128, 1, 8, 8)
    module.attributes["mode"] = "streaming"
    timing = time_program(module)
    (op,) = timing.ops
    stream = 128 * 128 * 4 / (150e9 / 850e6)
    assert stream > op.busy
    assert op.stream == pytest.approx(stream)
    assert timing.latency == pytest.approx(max(op.busy, stream))
    report = simulate(module, None, values=False).report
    assert report["bottleneck"]["why"].startswith("its weights")


@pytest.fixture(scope="module")
def tiny_pipelined() -> tuple[Module, dict]:
    compiled = compile_model(exported_model("gpt-tiny", "torchscript"), preset="mesh-64x64", mode="pipelined",
                             dtype="f32", shapes={"input_ids": (2, 64)}, out=io.StringIO())
    assert compiled.report is not None
    return compiled.module, compiled.report


def test_compute_cycles_agree_with_the_compile_report(tiny_pipelined: tuple[Module, dict]) -> None:
    module, compiled = tiny_pipelined
    report = simulate(module, None, values=False).report
    assert [r["name"] for r in report["regions"]] == [r["name"] for r in compiled["regions"]]
    for sim_region, region in zip(report["regions"], compiled["regions"], strict=True):
        assert sim_region["cycles"]["compute"] == pytest.approx(region["compute_cycles"])
    assert report["cycles_per_sample"] >= compiled["stage_cycles_max"]
    target = module_target(module)
    op = next(op for op in module.main.ops if op.name == "mesh.linear")
    tiling = op.attributes["tiling"]
    assert cycles_at(kernel_spec(op, target, "pipelined"), tiling.w, tiling.h) in [
        r["cycles"]["compute"] for r in report["regions"]]


def test_report_figures_hang_together(tiny_pipelined: tuple[Module, dict]) -> None:
    module, _ = tiny_pipelined
    report = json.loads(json.dumps(simulate(module, None, values=False).report))
    t = report["target"]
    assert report["batch"] == 2 and report["tokens_per_sample"] == 64
    assert report["latency_cycles"] == pytest.approx(report["fill_cycles"] + report["cycles_per_sample"])
    assert report["throughput"]["tokens_per_s"] == pytest.approx(t["clock_hz"] / report["cycles_per_sample"] * 64)
    assert report["utilization"] == pytest.approx(report["achieved_flops_per_s"] / t["peak_flops_per_s"])
    assert 0 < report["utilization"] < 1
    assert report["roofline"]["bound_cycles"] <= report["cycles_per_sample"]
    for r in report["regions"]:
        c = r["cycles"]
        assert c["compute"] + c["communication"] + c["waiting"] == pytest.approx(report["cycles_per_sample"])
        assert min(c.values()) >= 0
        assert r["roofline"]["bound_cycles"] <= c["stage"] + 1e-9
    worst = max(report["regions"], key=lambda r: r["cycles"]["stage"])
    assert report["bottleneck"]["region"] == worst["name"] and report["bottleneck"]["why"]
    assert report["hottest_links"] and report["hottest_links"][0]["bytes"] > 0


def test_timing_alone_reads_no_weights(tiny_pipelined: tuple[Module, dict]) -> None:
    module, _ = tiny_pipelined
    stripped = parse_module(print_module(module))
    assert stripped.weights is None
    assert simulate(stripped, None, values=False).report["cycles_per_sample"] == simulate(
        module, None, values=False).report["cycles_per_sample"]


@pytest.mark.slow
def test_13b_structure_on_wse3_times_in_under_10_s() -> None:
    compiled = compile_model(exported_model("cerebras-gpt-13b", "dynamo", no_weights=True), preset="wse3",
                             mode="pipelined",
                             shapes={"input_ids": (1, 2048)}, out=io.StringIO())
    start = time.perf_counter()
    result = simulate(compiled.module, None, values=False)
    assert time.perf_counter() - start < 10.0
    assert result.outputs == {}
    assert result.report["tokens_per_sample"] == 2048 and result.report["cycles_per_sample"] > 0

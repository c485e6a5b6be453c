"""The compile report of a placed program: report.json (schema in docs/report.md) and report.txt for people.

Everything is derived from the placed IR and its target, so a report can be rebuilt from any model.cgir.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cgpt.backends.mesh.kernels import cycles_at, sram_per_pe
from cgpt.backends.mesh.placement import Rect, stage_lower_bound, wirelength, wirelength_lower_bound
from cgpt.backends.mesh.program import (
    group_name,
    kernel_spec,
    module_dtype,
    module_mode,
    module_target,
    placement_problem,
    region_groups,
    tied_tables,
    transfer_routes,
)
from cgpt.backends.mesh.target import Target
from cgpt.ir.core import Module, Operation

REPORT_VERSION = 1
HOTTEST_LINKS = 10


def region_name(i: int, ops: list[Operation]) -> str:
    kinds = "+".join(op.name.removeprefix("mesh.") for op in ops)
    layer = ops[0].attributes.get("layer", -1)
    return f"{group_name(i)}.{kinds}" + (f".L{layer}" if layer >= 0 else "")


def build_report(module: Module, compile_seconds: float = 0.0, pass_seconds: dict[str, float] | None = None
                 ) -> dict[str, Any]:
    """report.json's content for a placed module."""
    target, mode, dtype = module_target(module), module_mode(module), module_dtype(module)
    fn = module.main
    tied = tied_tables(module)
    groups = region_groups(fn, tied)
    specs = {op: kernel_spec(op, target, mode, tied) for g in groups for op in g}
    regions = []
    for i, g in enumerate(groups):
        r = g[0].attributes["region"]
        compute = sum(cycles_at(specs[op], op.attributes["tiling"].w, op.attributes["tiling"].h) for op in g)
        regions.append({
            "name": region_name(i, g),
            "op": "+".join(op.name for op in g),
            "loc": [n for op in g for n in op.loc.names],
            "layer": g[0].attributes.get("layer", -1),
            "x": r.x, "y": r.y, "w": r.w, "h": r.h, "pes": r.w * r.h,
            "tiling": [{"w": op.attributes["tiling"].w, "h": op.attributes["tiling"].h} for op in g],
            "weight_bytes": int(sum(specs[op].weight_bytes for op in g)),
            "sram_bytes_per_pe_max": int(max(sram_per_pe(specs[op], op.attributes["tiling"].w,
                                                         op.attributes["tiling"].h) for op in g)),
            "flops": float(sum(specs[op].flops for op in g)),
            "compute_cycles": float(compute),
            "stream_cycles": float(_stream_cycles(g, target, specs)) if mode == "streaming" else 0.0,
        })
    kernels, edges = placement_problem(groups, specs, target)
    stage = [max(reg["compute_cycles"], reg["stream_cycles"]) for reg in regions]
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "model": module.name,
        "target": {"name": target.name, "width": target.width, "height": target.height,
                   "sram_bytes_per_pe": target.sram_bytes_per_pe,
                   "sram_usable_bytes_per_pe": target.sram_usable_bytes_per_pe, "clock_hz": target.clock_hz},
        "mode": mode,
        "dtype": dtype,
        "regions": regions,
    }
    if mode == "pipelined":
        rects = {group_name(i): Rect(reg["x"], reg["y"], reg["w"], reg["h"]) for i, reg in enumerate(regions)}
        result = transfer_routes(fn, target)
        hottest = [{"x": x, "y": y, "direction": d, "bytes": float(b)} for x, y, d, b in result.hottest(HOTTEST_LINKS)]
        report["routes"] = [
            {"src": _region_of(op.attributes["src"], regions), "dst": _region_of(op.attributes["dst"], regions),
             "bytes": int(op.attributes["bytes"]), "hops": int(op.attributes["hops"]),
             "color": int(op.attributes["color"])}
            for op in fn.ops if op.name == "mesh.transfer"]
        report["link_load"] = {"max_bytes": float(result.max_link_bytes), "mean_bytes": float(result.mean_link_bytes),
                               "hottest": hottest, "colors_max_per_pe": int(result.max_colors_per_pe)}
        report["wirelength"] = float(wirelength(rects, edges))
        report["wirelength_lower_bound"] = float(wirelength_lower_bound(rects, edges))
        report["stage_cycles_max"] = float(max(stage))
        report["stage_cycles_lower_bound"] = float(stage_lower_bound(kernels, target.width, target.height))
        report["pes_used"] = int(sum(reg["pes"] for reg in regions))
    else:
        report["routes"] = []
        report["link_load"] = {"max_bytes": 0.0, "mean_bytes": 0.0, "hottest": [], "colors_max_per_pe": 0}
        report["wirelength"] = 0.0
        report["wirelength_lower_bound"] = 0.0
        report["stage_cycles_max"] = float(max(stage))
        report["stage_cycles_lower_bound"] = float(max(_streaming_bound(reg, target, dtype) for reg in regions))
        report["sequence_cycles"] = float(sum(stage))
        report["pes_used"] = int(target.pes)
    report["bottleneck"] = regions[int(np.argmax(stage))]["name"]
    report["sram_bytes_per_pe_max"] = int(max(reg["sram_bytes_per_pe_max"] for reg in regions))
    report["compile"] = {"seconds": float(compile_seconds), "passes": dict(pass_seconds or {})}
    return report


def _stream_cycles(g: list[Operation], target: Target, specs: dict) -> float:  # type: ignore[type-arg]
    bytes_per_cycle = target.stream_bytes_per_s / target.clock_hz
    return sum(specs[op].weight_bytes for op in g) / bytes_per_cycle


def _streaming_bound(reg: dict[str, Any], target: Target, dtype: str) -> float:
    """An op on the whole mesh can do no better than its FLOPs at peak rate or its weights at streaming rate."""
    peak = float(target.flops_per_cycle[dtype]) * target.pes
    return max(reg["flops"] / peak, reg["stream_cycles"])


def _region_of(rect: Any, regions: list[dict[str, Any]]) -> str:
    for reg in regions:
        if (reg["x"], reg["y"], reg["w"], reg["h"]) == (rect.x, rect.y, rect.w, rect.h):
            return str(reg["name"])
    return "?"


def render_text(report: dict[str, Any]) -> str:
    """report.txt: the headline figures and a table of regions."""
    t = report["target"]
    lines = [
        f"cgpt compile report: {report['model']} on {t['name']} ({t['width']} x {t['height']} PEs), "
        f"{report['mode']} mode, {report['dtype']}",
        "",
        f"regions              {len(report['regions'])}",
        f"PEs used             {report['pes_used']:,} of {t['width'] * t['height']:,}",
        f"slowest stage        {report['stage_cycles_max']:,.0f} cycles ({report['bottleneck']})",
        f"stage lower bound    {report['stage_cycles_lower_bound']:,.0f} cycles "
        f"(ratio {_ratio(report['stage_cycles_max'], report['stage_cycles_lower_bound'])})",
    ]
    if report["mode"] == "pipelined":
        lines += [
            f"wirelength           {report['wirelength']:,.0f} byte-hops per sample "
            f"(lower bound {report['wirelength_lower_bound']:,.0f}, ratio "
            f"{_ratio(report['wirelength'], report['wirelength_lower_bound'])})",
            f"busiest link         {report['link_load']['max_bytes']:,.0f} bytes per sample",
        ]
    else:
        lines.append(f"one sample           {report['sequence_cycles']:,.0f} cycles (ops in sequence)")
    lines += [
        f"SRAM per PE (max)    {report['sram_bytes_per_pe_max']:,} of {t['sram_usable_bytes_per_pe']:,} usable bytes",
        f"compile time         {report['compile']['seconds']:.2f} s",
        "",
        f"{'region':32s} {'x':>5s} {'y':>5s} {'w':>5s} {'h':>5s} {'PEs':>8s} {'weights':>11s} {'SRAM/PE':>8s} "
        f"{'GFLOP':>8s} {'cycles':>11s}",
    ]
    for r in report["regions"]:
        lines.append(
            f"{r['name'][:32]:32s} {r['x']:5d} {r['y']:5d} {r['w']:5d} {r['h']:5d} {r['pes']:8,d} "
            f"{r['weight_bytes']:11,d} {r['sram_bytes_per_pe_max']:8,d} {r['flops'] / 1e9:8.3f} "
            f"{max(r['compute_cycles'], r['stream_cycles']):11,.0f}")
    return "\n".join(lines) + "\n"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def region_rects(report: dict[str, Any]) -> tuple[dict[str, Rect], dict[str, str], dict[str, int]]:
    """(rects, labels, layer groups) of the report's regions, for the placement picture."""
    rects = {r["name"]: Rect(r["x"], r["y"], r["w"], r["h"]) for r in report["regions"]}
    labels = {r["name"]: r["op"].replace("mesh.", "") for r in report["regions"]}
    groups = {r["name"]: max(r["layer"], 0) for r in report["regions"]}
    return rects, labels, groups

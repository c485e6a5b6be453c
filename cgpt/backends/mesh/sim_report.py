"""sim.json (schema in docs/report.md) and its human summary, from a timed program.

    report = sim_report(time_program(module))
    print(render_sim_text(report))
"""

from __future__ import annotations

from typing import Any

from cgpt.backends.mesh.sim_timing import ProgramTiming, TransferTiming

SIM_REPORT_VERSION = 1
HOTTEST_LINKS = 10


def _roofline(flops: float, sram_bytes: float, link_bytes: float, stream: float, pes: int, p: ProgramTiming
              ) -> dict[str, Any]:
    """Cycles per sample no schedule can beat on `pes` PEs: compute, SRAM reads, the busiest link and, when
    streaming, the weights' arrival."""
    t = p.target
    bound = {
        "compute_cycles": flops / (pes * t.flops_per_cycle[p.dtype]),
        "sram_cycles": sram_bytes / (pes * t.sram_read_bytes_per_cycle),
        "link_cycles": link_bytes / t.link_bytes_per_cycle,
        "stream_cycles": stream,
    }
    limit = max(bound, key=bound.__getitem__)
    return {**bound, "bound_cycles": bound[limit], "limit": limit.removesuffix("_cycles")}


def _region(p: ProgramTiming, r: int) -> dict[str, Any]:
    """A region's figures per sample. compute + communication + waiting add up to its stage: the period when
    pipelined (a faster stage waits for the slowest), its ops' time when streaming (waiting: for weights)."""
    members = p.regions[r]
    ops = [p.ops[i] for i in members]
    compute = sum(o.kernel for o in ops)
    busy = sum(o.busy for o in ops)
    stage = p.period if p.mode == "pipelined" else p.stage(r)
    stream = sum(o.stream for o in ops) / p.batch
    link_in = max((x.link_bytes for x in p.transfers if x.dst in members), default=0.0)
    return {
        "name": p.region_names[r],
        "op": "+".join(o.op for o in ops),
        "loc": [n for o in ops for n in o.loc],
        "pes": ops[0].pes,
        "tiling": [{"w": o.tiling[0], "h": o.tiling[1]} for o in ops],
        "pattern": [o.pattern for o in ops],
        "flops": sum(o.flops for o in ops),
        "weight_bytes": sum(o.weight_bytes for o in ops),
        "cycles": {"stage": p.stage(r), "compute": compute, "communication": busy - compute,
                   "waiting": stage - busy},
        "phases": {"kernel": compute, "broadcast": max(o.broadcast for o in ops),
                   "reduce": max(o.reduce for o in ops), "transfer_in": max(o.transfer_in for o in ops),
                   "stream": stream},
        "input_link_bytes": link_in,
        "start_cycle": p.start[members[0]],
        "finish_cycle": max(p.finish[i] for i in members),
        "roofline": _roofline(sum(o.flops for o in ops), sum(o.sram_bytes for o in ops),
                              max([link_in, *(o.link_bytes for o in ops)]), stream, ops[0].pes, p),
    }


def _why(p: ProgramTiming, reg: dict[str, Any]) -> str:
    """One sentence: what the bottleneck region's time is spent on."""
    ph, c = reg["phases"], reg["cycles"]
    if p.mode == "streaming" and ph["stream"] > c["compute"] + c["communication"]:
        return (f"its weights ({reg['weight_bytes']:,} bytes) stream onto the wafer in {ph['stream']:,.0f} cycles "
                f"per sample, longer than its {c['compute'] + c['communication']:,.0f} cycles of work")
    phase = max(("kernel", "broadcast", "reduce", "transfer_in"), key=ph.__getitem__)
    if phase == "kernel":
        roof = reg["roofline"]
        return (f"its kernel takes {ph['kernel']:,.0f} cycles per sample; the {roof['limit']} roofline of its "
                f"{reg['pes']:,} PEs is {roof['bound_cycles']:,.0f}")
    if phase == "transfer_in":
        return (f"its input arrives over a link carrying {reg['input_link_bytes']:,.0f} bytes per sample (other "
                f"transfers included): {ph['transfer_in']:,.0f} cycles, more than its kernel's {ph['kernel']:,.0f}")
    return (f"its {phase} ({reg['pattern'][0]}) takes {ph[phase]:,.0f} cycles per sample, more than its "
            f"kernel's {ph['kernel']:,.0f}")


def sim_report(p: ProgramTiming, model: str = "", values: bool = False, seconds: dict[str, float] | None = None
               ) -> dict[str, Any]:
    """sim.json's content for a timed program."""
    t = p.target
    clock = t.clock_hz
    regions = [_region(p, r) for r in range(len(p.regions))]
    flops = sum(o.flops for o in p.ops)
    samples_per_s = clock / p.period
    achieved = flops * samples_per_s
    peak = t.peak_flops(p.dtype)
    worst = max(range(len(regions)), key=lambda r: regions[r]["cycles"]["stage"])
    program_roof = _program_roofline(p, flops)
    report: dict[str, Any] = {
        "version": SIM_REPORT_VERSION,
        "model": model,
        "target": {"name": t.name, "width": t.width, "height": t.height, "clock_hz": clock,
                   "peak_flops_per_s": peak},
        "mode": p.mode,
        "dtype": p.dtype,
        "batch": p.batch,
        "tokens_per_sample": p.tokens,
        "values": values,
        "cycles_per_sample": p.period,
        "fill_cycles": p.fill,
        "latency_cycles": p.latency,
        "latency_s": p.latency / clock,
        "throughput": {"samples_per_s": samples_per_s, "tokens_per_s": samples_per_s * p.tokens},
        "flops_per_sample": flops,
        "achieved_flops_per_s": achieved,
        "utilization": achieved / peak,
        "roofline": {**program_roof, "fraction_of_bound": program_roof["bound_cycles"] / p.period},
        "bottleneck": {"region": regions[worst]["name"], "cycles": regions[worst]["cycles"]["stage"],
                       "why": _why(p, regions[worst])},
        "critical_path": list(dict.fromkeys(p.region_names[p.ops[i].region] for i in p.critical_path)),
        "regions": regions,
        "transfers": [_transfer(p, x) for x in p.transfers],
        "hottest_links": _hottest(p),
        "seconds": dict(seconds or {}),
    }
    return report


def _program_roofline(p: ProgramTiming, flops: float) -> dict[str, Any]:
    """Per-sample bounds for any schedule of these ops: the whole mesh's compute and SRAM, the busiest link
    (pipelined) or the weight stream (streaming, per sample of the batch)."""
    t = p.target
    pes = t.width * t.height
    sram = sum(o.sram_bytes for o in p.ops)
    link = p.routes.max_link_bytes if p.routes is not None else 0.0
    return _roofline(flops, sram, link, sum(o.stream for o in p.ops) / p.batch, pes, p)


def _transfer(p: ProgramTiming, x: TransferTiming) -> dict[str, Any]:
    name = p.region_names
    return {"src": name[p.ops[x.src].region] if x.src >= 0 else None,
            "dst": name[p.ops[x.dst].region] if x.dst >= 0 else None,
            "bytes": x.bytes, "hops": x.hops, "streams": x.streams, "busiest_link_bytes": x.link_bytes,
            "cycles": x.cycles, "latency_cycles": x.latency}


def _hottest(p: ProgramTiming) -> list[dict[str, Any]]:
    if p.routes is None:
        return []
    bw = p.target.link_bytes_per_cycle
    return [{"x": x, "y": y, "direction": d, "bytes": b, "cycles": b / bw, "busy_fraction": b / bw / p.period}
            for x, y, d, b in p.routes.hottest(HOTTEST_LINKS)]


def render_sim_text(report: dict[str, Any]) -> str:
    """A few lines for people: the headline figures and the bottleneck."""
    t, thr = report["target"], report["throughput"]
    roof = report["roofline"]
    lines = [
        f"cgpt sim: {report['model']} on {t['name']} ({t['width']} x {t['height']} PEs), {report['mode']}, "
        f"{report['dtype']}, batch {report['batch']} x {report['tokens_per_sample']} tokens",
        f"cycles per sample   {report['cycles_per_sample']:,.0f}",
        f"latency             {report['latency_cycles']:,.0f} cycles ({report['latency_s'] * 1e3:,.3f} ms)",
        f"throughput          {thr['samples_per_s']:,.1f} samples/s, {thr['tokens_per_s']:,.0f} tokens/s",
        f"utilization         {report['utilization'] * 100:.2f}% of {t['peak_flops_per_s'] / 1e12:,.1f} TFLOP/s "
        f"({report['dtype']})",
        f"roofline            {roof['bound_cycles']:,.0f} cycles per sample ({roof['limit']}-bound); achieved "
        f"{roof['fraction_of_bound'] * 100:.1f}% of it",
        f"bottleneck          {report['bottleneck']['region']}: {report['bottleneck']['why']}",
    ]
    for link in report["hottest_links"][:3]:
        lines.append(f"hot link            ({link['x']}, {link['y']}) {link['direction']}: {link['bytes']:,.0f} bytes "
                     f"per sample, busy {link['busy_fraction'] * 100:.0f}% of the period")
    return "\n".join(lines) + "\n"


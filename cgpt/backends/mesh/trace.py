"""A Chrome / Perfetto trace of a timed program: one process per region, one track per phase, flows for transfers.

    trace = build_trace(time_program(module))
    Path("trace.json").write_text(json.dumps(trace))        # open in ui.perfetto.dev or chrome://tracing

Layout (JSON trace-event format, times in microseconds of the target's clock):
    process  one per region, named "<region> <first ONNX node>" (pid = region index + 1)
    tracks   per op of the region: "<kind> stage" (its busy time per sample, the flow anchors), "compute"
             (the kernel), "broadcast", "reduce", "recv <region>" (wavelets of one incoming transfer landing),
             and "weights" when streaming
    flows    an arrow per transfer and sample, from the producer's stage to the consumer's recv slice
Every track holds one kind of slice per sample, each no longer than the period, so slices never overlap.
"""

from __future__ import annotations

from typing import Any

from cgpt.backends.mesh.sim_timing import OpTiming, ProgramTiming

TRACKS_PER_OP = 16  # tid = 1 + op's place in its region * TRACKS_PER_OP + track


def _process_name(p: ProgramTiming, r: int) -> str:
    locs = [n for i in p.regions[r] for n in p.ops[i].loc]
    more = f" +{len(locs) - 1}" if len(locs) > 1 else ""
    return f"{p.region_names[r]} {locs[0]}{more}" if locs else p.region_names[r]


class _Events:
    """Collects trace events, converting cycles to integer nanoseconds so slice ends and starts compare exactly."""

    def __init__(self, clock_hz: float) -> None:
        self.ns_per_cycle = 1e9 / clock_hz
        self.events: list[dict[str, Any]] = []

    def ns(self, cycles: float) -> int:
        return int(round(cycles * self.ns_per_cycle))

    def meta(self, kind: str, pid: int, tid: int, **args: Any) -> None:
        self.events.append({"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": args})

    def slice(self, name: str, cat: str, pid: int, tid: int, start: float, cycles: float, **args: Any) -> None:
        if cycles <= 0:
            return
        t0, t1 = self.ns(start), self.ns(start + cycles)
        self.events.append({"name": name, "cat": cat, "ph": "X", "pid": pid, "tid": tid, "ts": t0 / 1000,
                            "dur": max(t1 - t0, 1) / 1000, "args": {"cycles": cycles, **args}})

    def flow(self, phase: str, ident: int, pid: int, tid: int, at: float) -> None:
        event = {"name": "transfer", "cat": "transfer", "ph": phase, "id": ident, "pid": pid, "tid": tid,
                 "ts": self.ns(at) / 1000}
        if phase == "f":
            event["bp"] = "e"  # bind to the slice enclosing the arrival, the recv slice that starts there
        self.events.append(event)


def build_trace(p: ProgramTiming, model: str = "") -> dict[str, Any]:
    """The trace-event JSON object of every sample of the batch."""
    ev = _Events(p.target.clock_hz)
    place = {i: (r, k) for r, members in enumerate(p.regions) for k, i in enumerate(members)}

    def tid(i: int, track: int) -> int:
        return 1 + place[i][1] * TRACKS_PER_OP + track

    for r, members in enumerate(p.regions):
        ev.meta("process_name", r + 1, 0, name=_process_name(p, r))
        ev.meta("process_sort_index", r + 1, 0, sort_index=r)
        for i in members:
            kind = p.ops[i].op.removeprefix("mesh.")
            tracks = [f"{kind} stage", "compute", "broadcast", "reduce", "weights"]
            tracks += [f"recv {p.region_names[p.ops[x.src].region]}" for x in _incoming(p, i)]
            for n, label in enumerate(tracks):
                ev.meta("thread_name", r + 1, tid(i, n), name=label)
                ev.meta("thread_sort_index", r + 1, tid(i, n), sort_index=tid(i, n))
    samples = range(p.batch) if p.mode == "pipelined" else range(1)
    flow_id = 0
    for s in samples:
        shift = s * p.period
        for i, o in enumerate(p.ops):
            _op_slices(ev, p, o, p.region_names[o.region], o.region + 1, lambda n, i=i: tid(i, n),
                       p.start[i] + shift, s)
            for k, x in enumerate(_incoming(p, i)):
                src = p.ops[x.src]
                leave = p.finish[x.src] + shift
                land = leave + x.latency
                flow_id += 1
                ev.flow("s", flow_id, src.region + 1, tid(x.src, 0), leave - src.busy / 2)  # inside its stage slice
                ev.flow("f", flow_id, o.region + 1, tid(i, 5 + k), land)
                ev.slice(f"recv {x.bytes:,} B", "transfer", o.region + 1, tid(i, 5 + k), land, max(x.wavelets - 1, 1),
                         sample=s, hops=x.hops, busiest_link_bytes=x.link_bytes)
    return {"traceEvents": ev.events, "displayTimeUnit": "ns",
            "otherData": {"model": model, "target": p.target.name, "mode": p.mode, "dtype": p.dtype,
                          "batch": p.batch, "clock_hz": p.target.clock_hz, "cycles_per_sample": p.period}}


def _incoming(p: ProgramTiming, i: int) -> list[Any]:
    return [x for x in p.transfers if x.dst == i and x.src >= 0]


def _op_slices(ev: _Events, p: ProgramTiming, o: OpTiming, region: str, pid: int, tid: Any, start: float,
               sample: int) -> None:
    kind = o.op.removeprefix("mesh.")
    work = o.busy * (p.batch if p.mode == "streaming" else 1)
    span = max(work, o.stream)
    ev.slice(kind, "stage", pid, tid(0), start, span, sample=sample, region=region, loc=list(o.loc),
             tiling=list(o.tiling), pattern=o.pattern)
    scale = p.batch if p.mode == "streaming" else 1  # streaming runs the batch through each op in turn
    ev.slice("compute", "compute", pid, tid(1), start, o.kernel * scale, sample=sample, flops=o.flops * scale)
    ev.slice("broadcast", "collective", pid, tid(2), start, o.broadcast * scale, sample=sample)
    ev.slice("reduce", "collective", pid, tid(3), start + span - o.reduce * scale, o.reduce * scale, sample=sample)
    ev.slice("weights", "stream", pid, tid(4), start, o.stream, sample=sample, bytes=o.weight_bytes)

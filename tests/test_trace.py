"""The Perfetto / Chrome trace: valid JSON with the trace-event fields, a named process per region, properly
nested slices on every track, and a flow arrow per transfer and sample."""

from __future__ import annotations

import io
import json
from collections import defaultdict

import pytest

from cgpt.backends.mesh.simulator import simulate
from cgpt.driver import compile_model
from tests.models import exported_model

REQUIRED = {"X": {"name", "ph", "ts", "dur", "pid", "tid"}, "M": {"name", "ph", "pid", "args"},
            "s": {"name", "ph", "ts", "pid", "tid", "id"}, "f": {"name", "ph", "ts", "pid", "tid", "id"}}


@pytest.fixture(scope="module", params=["pipelined", "streaming"])
def traced(request: pytest.FixtureRequest) -> tuple[dict, dict]:
    compiled = compile_model(exported_model("gpt-tiny", "torchscript"), preset="mesh-64x64", mode=request.param,
                             dtype="f32", shapes={"input_ids": (3, 32)}, out=io.StringIO())
    result = simulate(compiled.module, None, values=False)
    return json.loads(json.dumps(result.trace)), result.report


def test_events_carry_the_required_fields(traced: tuple[dict, dict]) -> None:
    trace, _ = traced
    assert trace["displayTimeUnit"] in ("ms", "ns")
    events = trace["traceEvents"]
    assert events
    for e in events:
        assert REQUIRED[e["ph"]] <= e.keys(), e
        if e["ph"] == "X":
            assert e["ts"] >= 0 and e["dur"] > 0
            assert isinstance(e["pid"], int) and isinstance(e["tid"], int)


def test_one_named_process_per_region(traced: tuple[dict, dict]) -> None:
    trace, report = traced
    names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "process_name"}
    assert len(names) == len(report["regions"])
    for region in report["regions"]:
        label = next(n for n in names.values() if n.split(" ")[0] == region["name"])
        assert region["loc"][0] in label  # named after the op and its ONNX location
    threads = {(e["pid"], e["tid"]) for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    used = {(e["pid"], e["tid"]) for e in trace["traceEvents"] if e["ph"] == "X"}
    assert used <= threads
    assert {e["name"] for e in trace["traceEvents"] if e["ph"] == "X"} >= {"compute"}


def test_slices_nest_properly_on_every_track(traced: tuple[dict, dict]) -> None:
    trace, _ = traced
    tracks = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X":  # integer nanoseconds, as the trace writes them
            tracks[(e["pid"], e["tid"])].append((round(e["ts"] * 1000), round((e["ts"] + e["dur"]) * 1000)))
    for spans in tracks.values():
        open_ends: list[int] = []
        for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1], "slices overlap without nesting"
            open_ends.append(end)


def test_every_transfer_has_a_flow_per_sample(traced: tuple[dict, dict]) -> None:
    trace, report = traced
    starts = {e["id"]: e for e in trace["traceEvents"] if e["ph"] == "s"}
    ends = {e["id"]: e for e in trace["traceEvents"] if e["ph"] == "f"}
    assert starts.keys() == ends.keys()
    expected = sum(1 for t in report["transfers"] if t["src"] and t["dst"]) * report["batch"]
    assert len(starts) == (expected if report["mode"] == "pipelined" else 0)
    slices = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            slices[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    for ident, s in starts.items():
        f = ends[ident]
        assert f["bp"] == "e" and f["ts"] >= s["ts"]
        for flow in (s, f):  # each end sits on a slice of its track
            assert any(a <= flow["ts"] <= b for a, b in slices[(flow["pid"], flow["tid"])])

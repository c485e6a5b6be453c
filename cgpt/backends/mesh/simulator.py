"""The mesh simulator: run a placed program for its values (as the PEs compute them) and its time (as the target
would take), with a report and a Perfetto trace.

    result = simulate(module, {"input_ids": ids})             # values and time
    result.outputs["logits"], result.report["cycles_per_sample"], result.trace["traceEvents"]
    result = simulate(module, None, values=False)              # time alone: weights are never read

Values: sim_values.py (tiled numerics). Time: sim_timing.py (kernels.py per op, collectives.py per pattern, routes
with contention, the pipeline schedule). Report: sim_report.py (sim.json). Trace: trace.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cgpt.backends.mesh.sim_report import sim_report
from cgpt.backends.mesh.sim_timing import time_program
from cgpt.backends.mesh.sim_values import run_tiled
from cgpt.backends.mesh.trace import build_trace
from cgpt.ir.core import Module
from cgpt.ir.diagnostics import RunError


@dataclass(frozen=True)
class SimResult:
    """What a simulation produced: outputs by name (empty without values), sim.json's content and the trace."""

    outputs: dict[str, np.ndarray]
    report: dict[str, Any]
    trace: dict[str, Any] = field(repr=False)


def simulate(module: Module, inputs: dict[str, np.ndarray] | None, *, values: bool = True) -> SimResult:
    """Simulate a placed program; `values=False` skips the arithmetic (and needs no inputs or weights)."""
    if values and inputs is None:
        raise RunError("the simulator needs inputs to compute values (or run it with values=False for time alone)")
    start = time.perf_counter()
    timing = time_program(module)
    timing_s = time.perf_counter() - start
    outputs: dict[str, np.ndarray] = {}
    values_s = 0.0
    if values:
        assert inputs is not None
        start = time.perf_counter()
        outputs = run_tiled(module, inputs)
        values_s = time.perf_counter() - start
    report = sim_report(timing, model=module.name, values=values,
                        seconds={"timing": timing_s, "values": values_s})
    return SimResult(outputs, report, build_trace(timing, model=module.name))

"""The handful of fabric and PE numbers both timing models read.

A `Target` produces one with `Target.fabric_params()`; until then tests and the sweep build their own:

    >>> FabricParams(ramp_latency_cycles=2).wavelets(10)   # 10 bytes ride in 3 wavelets of 4 bytes
    3
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cgpt.ir.diagnostics import TargetError


@dataclass(frozen=True)
class FabricParams:
    """Link, router and PE parameters, named as the target TOML names them.

    link_bytes_per_cycle: payload of one wavelet; a link moves one wavelet per cycle per direction.
    hop_latency_cycles: cycles for a wavelet to cross one router-to-router link.
    ramp_latency_cycles: cycles between a PE and its own router, each way (T_R in HPDC'24).
    flops_per_cycle: peak PE rate for the dtype in use; an FMAC lane does 2 FLOPs (flops_per_cycle / 2 lanes).
    queue_depth: wavelets each router input queue holds per color before it back-pressures; credits cover
        wavelets in flight, so a stream keeps one wavelet per cycle only with queue_depth > ramp latency.
    """

    link_bytes_per_cycle: int = 4
    hop_latency_cycles: int = 1
    ramp_latency_cycles: int = 2
    flops_per_cycle: float = 8.0
    queue_depth: int = 4

    def __post_init__(self) -> None:
        if self.link_bytes_per_cycle < 1:
            raise TargetError(f"link_bytes_per_cycle must be >= 1, got {self.link_bytes_per_cycle}")
        if self.hop_latency_cycles < 1 or self.ramp_latency_cycles < 1:
            raise TargetError(
                "the fabric model needs hop_latency_cycles and ramp_latency_cycles >= 1, got "
                f"{self.hop_latency_cycles} and {self.ramp_latency_cycles}"
            )
        if self.flops_per_cycle < 2.0:
            raise TargetError(f"flops_per_cycle must be >= 2 (one FMAC lane), got {self.flops_per_cycle}")
        if self.queue_depth < 1:
            raise TargetError(f"queue_depth must be >= 1, got {self.queue_depth}")

    @property
    def fmac_lanes(self) -> int:
        """Elements one FMAC instruction retires per cycle."""
        return int(self.flops_per_cycle // 2)

    def wavelets(self, nbytes: np.ndarray | int) -> np.ndarray | int:
        """Wavelets needed to carry `nbytes` (ceiling division; arrays in, arrays out)."""
        w = -(-np.asarray(nbytes, dtype=np.int64) // self.link_bytes_per_cycle)
        return int(w) if w.ndim == 0 else w

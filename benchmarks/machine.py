"""What a benchmark result was measured on: date, CPU, cores, versions."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata


def machine_lines() -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for pkg in ("numpy", "onnx", "onnxruntime", "torch", "transformers", "lark", "xdsl"):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return [
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()} on {platform.system()}",
        f"- versions: {', '.join(versions)}",
    ]


def median_seconds(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn` over `repeat` runs after `warmup` runs (machines here are noisy)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

"""Exports the benchmarks share, cached under build/bench-models (structure-only for the large presets)."""

from __future__ import annotations

from pathlib import Path

from cgpt.frontend.export import export_gpt
from cgpt.frontend.presets import get_preset

CACHE = Path(__file__).parents[1] / "build" / "bench-models"
FAMILY = ("cerebras-gpt-111m", "cerebras-gpt-256m", "cerebras-gpt-590m", "cerebras-gpt-1.3b", "cerebras-gpt-2.7b",
          "cerebras-gpt-6.7b", "cerebras-gpt-13b")


def bench_model(preset: str, exporter: str = "torchscript", no_weights: bool = False) -> Path:
    """The export of `preset` (real random weights, or structure only), exporting it on first use."""
    kind = "structure" if no_weights else "weights"
    exporter = "dynamo" if no_weights else exporter  # structure-only export needs the dynamo exporter
    path = CACHE / f"{preset}-{exporter}-{kind}.onnx"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        export_gpt(path, preset=get_preset(preset), exporter=exporter, no_weights=no_weights)
    return path

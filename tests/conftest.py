"""Shared fixtures. Exported ONNX models come from tests/models.py (cached under build/test-models/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import exported_model


def _require_slow(request: pytest.FixtureRequest, what: str) -> None:
    """The cerebras-gpt-111m exports take ~30 s each to build (once; then cached): slow tests only."""
    if request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{what} is a slow fixture: mark the test @pytest.mark.slow")


@pytest.fixture(scope="session")
def tiny_dynamo() -> Path:
    """gpt-tiny, dynamo exporter, opset 18, sdpa attention."""
    return exported_model("gpt-tiny", "dynamo")


@pytest.fixture(scope="session")
def tiny_torchscript() -> Path:
    """gpt-tiny, TorchScript exporter, opset 17, sdpa attention."""
    return exported_model("gpt-tiny", "torchscript")


@pytest.fixture(scope="session")
def nanogpt_opset14() -> Path:
    """Our nanoGPT at gpt-tiny's shape, TorchScript exporter, opset 14 (LayerNorm as arithmetic)."""
    return exported_model("gpt-tiny", "torchscript", opset=14, kind="nanogpt")


@pytest.fixture
def gpt111m_torchscript(request: pytest.FixtureRequest) -> Path:
    """cerebras-gpt-111m, TorchScript exporter, opset 17 (2167 nodes); for @pytest.mark.slow tests only."""
    _require_slow(request, "gpt111m_torchscript")
    return exported_model("cerebras-gpt-111m", "torchscript")


@pytest.fixture
def gpt111m_dynamo(request: pytest.FixtureRequest) -> Path:
    """cerebras-gpt-111m, dynamo exporter, opset 18; for @pytest.mark.slow tests only."""
    _require_slow(request, "gpt111m_dynamo")
    return exported_model("cerebras-gpt-111m", "dynamo")

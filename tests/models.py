"""Exported test models, cached on disk under build/test-models/ and shared by every test and xdist worker.

    path = exported_model("gpt-tiny", "torchscript", opset=17)
    path = exported_model("gpt-tiny", "torchscript", opset=14, kind="nanogpt")

The file name encodes every parameter plus a digest of the exporter sources and library versions, so a change
to the export code never serves a stale model (and the stale file is deleted once its successor is written).
Two workers asking for the same file take turns on a lock file; the second finds the file written and returns.
"""

from __future__ import annotations

import fcntl
import hashlib
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cgpt.frontend.presets import GPTPreset

REPO_ROOT = Path(__file__).parents[1]
MODEL_DIR = REPO_ROOT / "build" / "test-models"
EXPORT_SOURCES = ("presets.py", "export.py", "nanogpt.py", "torch_export.py")
KINDS = ("hf", "nanogpt")


def exported_model(
    preset: str,
    exporter: str = "dynamo",
    opset: int | None = None,
    layers: int | None = None,
    seq_len: int | None = None,
    attn: str = "sdpa",
    kind: str = "hf",
    seed: int = 0,
    no_weights: bool = False,
) -> Path:
    """The path of `preset` exported with these settings, exporting it first if no cached file exists."""
    from cgpt.frontend.presets import get_preset
    from cgpt.frontend.torch_export import DEFAULT_OPSET

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    p = get_preset(preset)
    if opset is None:
        opset = 14 if kind == "nanogpt" and exporter == "torchscript" else DEFAULT_OPSET[exporter]
    seq = min(128, p.n_ctx) if seq_len is None else seq_len
    flavour = attn if kind == "hf" else "native"
    weights = "-structure" if no_weights else ""
    key = f"{kind}-{preset}-{exporter}-opset{opset}-layers{layers or 'all'}-seq{seq}-{flavour}-seed{seed}{weights}"
    digest = _source_digest()
    path = MODEL_DIR / f"{key}-{digest}.onnx"
    if path.exists():
        return path
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():  # another worker may have written it while we waited
            _export(path, p, kind, exporter, opset, layers, seq, attn, seed, no_weights)
            _remove_stale(key, digest)
    return path


def _export(
    path: Path,
    p: GPTPreset,
    kind: str,
    exporter: str,
    opset: int,
    layers: int | None,
    seq: int,
    attn: str,
    seed: int,
    no_weights: bool = False,
) -> None:
    if kind == "nanogpt":
        from cgpt.frontend.nanogpt import export_nanogpt

        export_nanogpt(
            path,
            p if layers is None else p.with_layers(layers),
            opset=opset,
            exporter=exporter,
            seq_len=seq,
            seed=seed,
        )
        return
    from cgpt.frontend.export import export_gpt

    export_gpt(
        path,
        preset=p,
        exporter=exporter,
        opset=opset,
        layers=layers,
        seq_len=seq,
        attn_implementation=attn,
        seed=seed,
        no_weights=no_weights,
    )


def _remove_stale(key: str, digest: str) -> None:
    """Delete this model's exports made by older exporter sources: a 111M export is 600 MB each."""
    for old in MODEL_DIR.glob(f"{key}-*.onnx*"):
        if f"-{digest}.onnx" not in old.name:
            old.unlink(missing_ok=True)


def _source_digest() -> str:
    """8 hex digits over the exporter sources and the torch/transformers/onnxscript versions."""
    digest = hashlib.sha256()
    for name in EXPORT_SOURCES:
        digest.update((REPO_ROOT / "cgpt" / "frontend" / name).read_bytes())
    for package in ("torch", "transformers", "onnxscript"):
        digest.update(metadata.version(package).encode())
    return digest.hexdigest()[:8]

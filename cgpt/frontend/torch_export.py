"""Trace a torch language model (`input_ids` -> `logits`) to ONNX and write it atomically.

Shared by the HF GPT-2 export (`export.py`) and our own nanoGPT (`nanogpt.py`):

    model = trace_to_onnx(module, exporter="dynamo", opset=18, example_shape=(2, 128), max_seq=2048,
                          staging_dir=tmp)
    write_onnx(model, "model.onnx")

Both exporters give the graph input `input_ids` (int64, [batch, seq]) and output `logits`
([batch, seq, vocab]) with symbolic dims named `batch` and `seq`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cgpt.ir.diagnostics import ExportError
from cgpt.ir.files import atomic_path

if TYPE_CHECKING:
    import onnx_ir as ir
    import torch

EXPORTERS = ("dynamo", "torchscript")
DEFAULT_OPSET = {"dynamo": 18, "torchscript": 17}
MIN_OPSET, MAX_OPSET = 14, 20
# torch.onnx builds opset 18 graphs and converts; below 18 the conversion fails or is invalid
DYNAMO_MIN_OPSET = 18
# protobuf caps a serialised model at 2 GiB; keep room for the graph itself
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26
# tensors below this stay inline when weights go external (onnx's own convention)
INLINE_TENSOR_BYTES = 1024
# page-aligned offsets let a reader memory-map each tensor
DATA_ALIGNMENT = 4096
INPUT_NAME, OUTPUT_NAME = "input_ids", "logits"
DYNAMIC_DIMS = ("batch", "seq")


def check_exporter(exporter: str, opset: int | None) -> int:
    """Validate `exporter` and `opset`; return the opset to use (the exporter's default when None)."""
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter '{exporter}' (valid: {', '.join(EXPORTERS)})")
    if opset is None:
        return DEFAULT_OPSET[exporter]
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported (valid: {MIN_OPSET}..{MAX_OPSET})")
    if exporter == "dynamo" and opset < DYNAMO_MIN_OPSET:
        raise ExportError(
            f"the dynamo exporter cannot produce opset {opset}: it builds opset 18 and its down-conversion "
            "fails (no LayerNormalization before 17, an invalid Split at 17); "
            "use --exporter torchscript for opsets 14..17"
        )
    return opset


def data_file_for(out_path: str | os.PathLike[str]) -> Path:
    """The external-data side file of a model: `model.onnx` -> `model.onnx.data`."""
    out = Path(out_path)
    return out.with_name(out.name + ".data")


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporters' chatter (torchvision notices, deprecation warnings) for the duration."""
    loggers = [
        logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
    ]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def trace_to_onnx(
    module: torch.nn.Module,
    *,
    exporter: str,
    opset: int,
    example_shape: tuple[int, int],
    max_seq: int,
    staging_dir: Path,
) -> ir.Model:
    """Export `module` (input_ids -> logits) with the chosen exporter and return it as an onnx_ir model.

    The torchscript exporter writes into `staging_dir` (large models spill external data there, so keep the
    directory until the model is written); the dynamo exporter stays in memory.
    """
    import torch

    batch, seq = example_shape
    if exporter == "dynamo":
        # torch.export specialises dims whose example size is 0 or 1, which would freeze batch or seq
        batch, seq = max(batch, 2), max(seq, 2)
    example = torch.zeros((batch, seq), dtype=torch.int64)
    try:
        with quiet_exporter(), torch.no_grad():
            model = (
                _dynamo(module, example, opset, max_seq)
                if exporter == "dynamo"
                else _torchscript(module, example, opset, staging_dir)
            )
    except ExportError:
        raise
    except Exception as exc:  # the exporters raise many types; report one line, keep the cause chained
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(f"the {exporter} exporter failed at opset {opset}: {first_line}") from exc
    _check_exported(model, exporter, opset)
    return model


def _dynamo(module: torch.nn.Module, example: torch.Tensor, opset: int, max_seq: int) -> ir.Model:
    import torch

    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=max_seq)
    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={INPUT_NAME: {0: batch, 1: seq}},
        opset_version=opset,
        optimize=True,
        verbose=False,
    )
    return program.model


def _torchscript(module: torch.nn.Module, example: torch.Tensor, opset: int, staging_dir: Path) -> ir.Model:
    import onnx_ir as ir
    import torch

    axes = dict(enumerate(DYNAMIC_DIMS))
    staged = staging_dir / "model.onnx"
    torch.onnx.export(
        module,
        (example,),
        str(staged),
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
        opset_version=opset,
        do_constant_folding=True,
    )
    return ir.load(staged)


def _check_exported(model: ir.Model, exporter: str, opset: int) -> None:
    """Fail loudly where an exporter quietly ignored what we asked for."""
    got = model.opset_imports.get("", None)
    if got != opset:
        raise ExportError(f"the {exporter} exporter produced opset {got}, not the requested {opset}")
    inputs = {v.name: v for v in model.graph.inputs}
    if set(inputs) != {INPUT_NAME}:
        raise ExportError(
            f"the {exporter} exporter produced inputs {sorted(inputs)}, expected ['{INPUT_NAME}']"
        )
    dims = [str(d) for d in inputs[INPUT_NAME].shape or ()]
    if dims != list(DYNAMIC_DIMS):
        raise ExportError(
            f"the {exporter} exporter gave input_ids the shape {dims}, expected {list(DYNAMIC_DIMS)}"
        )


def write_onnx(
    model: ir.Model,
    out_path: str | os.PathLike[str],
    *,
    placeholders: frozenset[str] = frozenset(),
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write `model` to `out_path` atomically: one file, or the model plus `<name>.data` for large weights.

    Initializers named in `placeholders` are never read: they become external data whose bytes are a hole
    in a sparse side file (a structure-only model). Everything else keeps its real values.
    """
    import onnx
    import onnx_ir as ir

    out = Path(out_path)
    data_path = data_file_for(out)
    model.metadata_props.update(metadata or {})
    initializers = list(model.graph.initializers.values())
    weight_bytes = sum(v.const_value.nbytes for v in initializers if v.const_value is not None)
    if not placeholders and weight_bytes < EXTERNAL_DATA_THRESHOLD:
        proto = ir.serde.serialize_model(model)
        with atomic_path(out) as tmp:
            onnx.save_model(proto, tmp)
        # a side file left by an earlier, larger export would describe another model
        data_path.unlink(missing_ok=True)
        return out
    # nested so the data file lands first: the model never points at a missing or stale side file
    with atomic_path(out) as tmp_model:
        with atomic_path(data_path) as tmp_data:
            with open(tmp_data, "r+b") as data:
                size = _externalize(initializers, data, data_path.name, placeholders)
                data.truncate(size)
            onnx.save_model(ir.serde.serialize_model(model), tmp_model)
    return out


def _externalize(
    initializers: list[ir.Value], data: BinaryIO, location: str, placeholders: frozenset[str]
) -> int:
    """Move large (and all placeholder) initializers into `data`; return the data file's size."""
    import onnx_ir as ir

    offset = 0
    for value in initializers:
        tensor = value.const_value
        if tensor is None or (value.name not in placeholders and tensor.nbytes < INLINE_TENSOR_BYTES):
            continue
        offset = -(-offset // DATA_ALIGNMENT) * DATA_ALIGNMENT
        if value.name not in placeholders:
            data.seek(offset)
            data.write(tensor.tobytes())
        value.const_value = ir.ExternalTensor(
            location, offset, tensor.nbytes, tensor.dtype, shape=tensor.shape, name=value.name
        )
        offset += tensor.nbytes
    return offset

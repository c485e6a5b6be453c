"""ONNX fuzzing: mutated real exports (flipped bytes, removed nodes, renamed inputs, changed dims) either import
or fail with one of our diagnostics, never another exception. `make fuzz` runs more cases."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest

from cgpt.frontend.onnx_import import import_onnx
from cgpt.ir.diagnostics import CgptError
from cgpt.ir.verifier import verify_module
from tests.models import exported_model

CASES = int(os.environ.get("CGPT_FUZZ_EXAMPLES", "40"))
SECONDS_PER_CASE = 20


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"case took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _import(path: Path) -> None:
    with time_limit(SECONDS_PER_CASE):
        try:
            verify_module(import_onnx(path))
        except CgptError as err:
            assert err.headline().count("\n") == 0 and "error:" in err.headline()


def _mutate_proto(model: onnx.ModelProto, rng: np.random.Generator) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    kind = rng.integers(0, 5)
    if kind == 0 and len(g.node) > 1:
        del g.node[int(rng.integers(0, len(g.node)))]
    elif kind == 1:
        node = g.node[int(rng.integers(0, len(g.node)))]
        if node.input:
            node.input[int(rng.integers(0, len(node.input)))] = "renamed_" + str(rng.integers(0, 1000))
    elif kind == 2:
        dims = g.input[0].type.tensor_type.shape.dim
        dims[int(rng.integers(0, len(dims)))].dim_value = int(rng.choice([0, 1, 3, 2**40]))
    elif kind == 3 and g.initializer:
        init = g.initializer[int(rng.integers(0, len(g.initializer)))]
        if init.dims:
            init.dims[0] = int(init.dims[0] + rng.integers(1, 5))
    else:
        node = g.node[int(rng.integers(0, len(g.node)))]
        node.op_type = str(rng.choice(["Frobnicate", "MatMul", "Add", "Reshape", "Softmax"]))
    return m


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_mutated_graphs_import_or_fail_cleanly(exporter: str, tmp_path: Path) -> None:
    model = onnx.load(str(exported_model("gpt-tiny", exporter)))
    rng = np.random.default_rng(7)
    for i in range(CASES):
        path = tmp_path / f"case{i}.onnx"
        onnx.save(_mutate_proto(model, rng), str(path))
        _import(path)


def test_flipped_and_truncated_bytes_fail_cleanly(tmp_path: Path) -> None:
    data = bytearray(exported_model("gpt-tiny", "torchscript").read_bytes())
    rng = np.random.default_rng(11)
    for i in range(CASES):
        blob = bytearray(data)
        if i % 3 == 0:
            blob = blob[: int(rng.integers(0, len(blob)))]
        else:
            for pos in rng.integers(0, len(blob), size=int(rng.integers(1, 16))):
                blob[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"bytes{i}.onnx"
        path.write_bytes(bytes(blob))
        _import(path)

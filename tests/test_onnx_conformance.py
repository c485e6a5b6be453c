"""onnx's own backend node tests, run through the importer and the reference backend.

The cases come from the generators shipped in the onnx wheel (`onnx.backend.test.case.node`): about 1,900
small models with inputs and expected outputs. Generating them takes seconds, so they are generated once and
cached in build/ (keyed by the onnx version); every case is a parameter, and a case we cannot run is a skip
that says why.
The pass count is reported as a `ConformanceReport` warning in the warnings summary.
"""

from __future__ import annotations

import functools
import pickle
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from cgpt.backends.reference.interpreter import run_module
from cgpt.frontend.convert import lookup_converter
from cgpt.frontend.onnx_import import MAX_OPSET, MIN_OPSET, ONNX_TO_IR_DTYPE, import_model_proto
from cgpt.ir.files import write_bytes_atomic

CACHE = Path(__file__).resolve().parents[1] / "build" / "onnx-node-cases" / f"onnx-{onnx.__version__}.pkl"


class ConformanceReport(UserWarning):
    """The pass count of the onnx node conformance cases."""


@dataclass(frozen=True)
class Case:
    name: str
    model: bytes
    inputs: list
    outputs: list


@functools.lru_cache(maxsize=1)
def all_cases() -> list[Case]:
    """Every node case of the installed onnx, generated once and cached on disk."""
    if CACHE.is_file():
        try:
            return pickle.loads(CACHE.read_bytes())
        except Exception:  # a stale or partial cache is regenerated
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        generated = collect_testcases()
    cases = [
        Case(
            c.name,
            c.model.SerializeToString(),
            [_array(v) for v in c.data_sets[0][0]],
            [_array(v) for v in c.data_sets[0][1]],
        )
        for c in generated
        if c.model is not None and c.data_sets
    ]
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(CACHE, pickle.dumps(cases))
    return cases


def _array(value: object) -> object:
    """A TensorProto value as a numpy array (sequences and optionals stay as they are: those cases skip)."""
    if isinstance(value, onnx.TensorProto):
        try:
            return onnx.numpy_helper.to_array(value)
        except Exception:
            return value
    return value


def skip_reason(case: Case) -> str | None:
    """Why a case cannot run on the importer and reference backend (None: it can)."""
    model = onnx.ModelProto.FromString(case.model)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        return f"opset {opset} outside the supported {MIN_OPSET} to {MAX_OPSET}"
    missing = sorted(
        {
            n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
            for n in model.graph.node
            if n.domain not in ("", "ai.onnx") or lookup_converter(n.op_type, opset) is None
        }
    )
    if missing:
        return f"op type not supported by the importer: {', '.join(missing)}"
    for node in model.graph.node:
        if node.op_type == "LayerNormalization" and any(node.output[1:]):
            return "LayerNormalization's Mean and InvStdDev outputs are not produced"
    arrays = [*case.inputs, *case.outputs]
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return "sequence or optional values (only tensors are supported)"
    types = {vi.type.tensor_type.elem_type for vi in [*model.graph.input, *model.graph.output]}
    types |= {t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        types |= {a.t.data_type for a in node.attribute if a.type == onnx.AttributeProto.TENSOR}
        types |= {a.i for a in node.attribute if a.name == "to" and node.op_type == "Cast"}
    unsupported = sorted(
        onnx.helper.tensor_dtype_to_np_dtype(t).name if t in onnx.helper.get_all_tensor_dtypes() else str(t)
        for t in types
        if t and t not in ONNX_TO_IR_DTYPE
    )
    if unsupported:
        return f"element type not in the IR: {', '.join(unsupported)}"
    if any(a.ndim == 0 and a.size == 0 for a in arrays):
        return "empty value"
    return None


def _params() -> list:
    params = []
    for case in all_cases():
        reason = skip_reason(case)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def run_case(case: Case) -> list[np.ndarray]:
    model = onnx.ModelProto.FromString(case.model)
    module = import_model_proto(model, name=case.name)
    names = [vi.name for vi in model.graph.input]
    outputs = run_module(module, dict(zip(names, case.inputs, strict=True)), check_types=True)
    return [outputs[vi.name] for vi in model.graph.output]


def check_outputs(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape, f"shape {g.shape}, expected {e.shape}"
        assert g.dtype == e.dtype, f"dtype {g.dtype}, expected {e.dtype}"
        if e.dtype.kind in "f" or e.dtype.name == "bfloat16":
            tol = {"float32": (1e-5, 1e-6), "float16": (1e-3, 1e-3), "bfloat16": (1e-2, 1e-2)}[e.dtype.name]
            np.testing.assert_allclose(g.astype(np.float32), e.astype(np.float32), rtol=tol[0], atol=tol[1])
        else:
            np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("case", _params())
def test_node_case(case: Case) -> None:
    check_outputs(run_case(case), case.outputs)


def test_conformance_pass_count() -> None:
    """Runs every runnable case once more, counting passes, and reports the count as a warning."""
    counts: Counter[str] = Counter()
    for case in all_cases():
        if skip_reason(case):
            counts["skipped"] += 1
            continue
        try:
            check_outputs(run_case(case), case.outputs)
            counts["passed"] += 1
        except Exception:
            counts["failed"] += 1
    total = sum(counts.values())
    warnings.warn(
        ConformanceReport(
            f"onnx node conformance: {counts['passed']} of {total} cases pass "
            f"({counts['skipped']} skipped, {counts['failed']} failing)"
        ),
        stacklevel=1,
    )
    assert counts["failed"] == 0

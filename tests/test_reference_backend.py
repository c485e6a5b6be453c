"""The reference backend: real exports against onnxruntime, input checks, memory behaviour."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest

from cgpt.backends.reference.interpreter import Interpreter, eval_dim, run_module
from cgpt.frontend.onnx_import import import_onnx
from cgpt.ir.builder import Builder
from cgpt.ir.core import Function, Module
from cgpt.ir.diagnostics import RunError
from cgpt.ir.registry import lookup_op
from cgpt.ir.types import Sym, TensorType
from cgpt.ir.verifier import verify_module
from cgpt.ir.weights import WeightStore
from tests.models import exported_model

# -- the interpreter on hand-built IR ------------------------------------------------------------------------


def _module(arg_types: list[TensorType], names: list[str]) -> tuple[Module, Function, Builder]:
    module = Module("m", weights=WeightStore())
    fn = module.add_function(Function("main", arg_types, names))
    return module, fn, Builder(fn)


def test_weights_reach_kernels_uncopied() -> None:
    x_t = TensorType((Sym("n"), 4), "f32")
    module, fn, b = _module([x_t], ["x"])
    w = np.arange(16, dtype=np.float32).reshape(4, 4)
    w.flags.writeable = False
    module.weights.add("w", w)
    y = b.create("matmul", [fn.args[0], b.weight("w", TensorType((4, 4), "f32"))]).result
    fn.set_outputs([y], ["y"])
    seen = []
    interp = Interpreter(module)
    matmul = next(s for s in interp._steps if s.op.name == "matmul")
    kernel = matmul.kernel
    matmul.kernel = lambda inputs, attrs: (seen.append(inputs[1]), kernel(inputs, attrs))[1]
    out = interp.run({"x": np.ones((3, 4), np.float32)})["y"]
    assert seen[0] is w
    assert np.array_equal(out, np.ones((3, 4), np.float32) @ w)


def test_intermediates_are_freed_after_their_last_use() -> None:
    t = TensorType((1024,), "f32")
    module, fn, b = _module([t], ["x"])
    a = b.create("exp", [fn.args[0]]).result  # used by the next op only
    c = b.create("neg", [a]).result
    d = b.create("abs", [c]).result
    fn.set_outputs([d], ["y"])
    interp = Interpreter(module)
    refs: dict[str, weakref.ref] = {}
    for step in interp._steps:
        kernel, name = step.kernel, step.op.name

        def traced(inputs, attrs, kernel=kernel, name=name):
            gc.collect()
            alive = {k for k, r in refs.items() if r() is not None}
            out = kernel(inputs, attrs)
            refs[name] = weakref.ref(out)
            traced.alive = alive
            return out

        step.kernel = traced
    interp.run({"x": np.zeros(1024, np.float32)})
    gc.collect()
    assert refs["exp"]() is None and refs["neg"]() is None  # freed; only the output survives the run
    assert interp._steps[2].kernel.alive == {"neg"}  # when abs runs, exp's result is already gone


def test_symbols_bind_across_inputs_and_into_attributes() -> None:
    seq = Sym("seq")
    module, fn, b = _module([TensorType((2, seq), "f32"), TensorType((seq,), "f32")], ["a", "b"])
    s = b.create("add", [fn.args[0], fn.args[1]]).result
    r = b.create("reshape", [s], {"shape": (seq, 2)}).result
    fn.set_outputs([r], ["r"])
    out = run_module(
        module, {"a": np.ones((2, 3), np.float32), "b": np.ones(3, np.float32)}, check_types=True
    )
    assert out["r"].shape == (3, 2)
    with pytest.raises(
        RunError,
        match=r"input 'b' has shape \[4\]: dim 0 \(\?seq\) is 4, but input 'a' binds "
        r"\?seq to 3",
    ):
        run_module(module, {"a": np.ones((2, 3), np.float32), "b": np.ones(4, np.float32)})


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, r"^error: missing input 'x' \(expected inputs: x\)$"),
        (
            {"x": np.ones((2, 3), np.float32), "y": np.ones(1)},
            r"^error: unknown input 'y' \(expected inputs: x\)$",
        ),
        (
            {"x": np.ones((2, 4), np.float32)},
            r"^error: input 'x' has shape \[2, 4\], expected tensor<\?nx3xf32> \(dim 1 must be 3\)$",
        ),
        ({"x": np.ones((2, 3), np.float16)}, r"^error: input 'x' has dtype f16, expected f32"),
        ({"x": [[1.0, 2.0, 3.0]]}, r"^error: input 'x' is a list, not a numpy array$"),
    ],
)
def test_input_errors_name_the_input(inputs: dict, message: str) -> None:
    module, fn, b = _module([TensorType((Sym("n"), 3), "f32")], ["x"])
    fn.set_outputs([b.create("neg", [fn.args[0]]).result], ["y"])
    with pytest.raises(RunError) as info:
        run_module(module, inputs)
    assert __import__("re").search(message, info.value.headline())


def test_check_types_catches_a_kernel_that_breaks_its_type() -> None:
    module, fn, b = _module([TensorType((3,), "f32")], ["x"])
    fn.set_outputs([b.create("neg", [fn.args[0]]).result], ["y"])
    interp = Interpreter(module, check_types=True)
    interp._steps[0].kernel = lambda inputs, attrs: np.zeros(4, np.float32)
    with pytest.raises(RunError, match=r"'neg' produced float32\[4\], but its result type is tensor<3xf32>"):
        interp.run({"x": np.zeros(3, np.float32)})


def test_eval_dim() -> None:
    assert eval_dim(Sym("((batch*seq)*12)"), {"batch": 2, "seq": 9}) == 216
    assert eval_dim(Sym("(seq-1)"), {"seq": 9}) == 8
    assert eval_dim(Sym("(seq/2)"), {"seq": 9}) == 4
    assert eval_dim(Sym("seq"), {}) is None
    assert eval_dim(7, {}) == 7


def test_registry_has_the_ops_real_exports_use() -> None:
    for name in ("gather", "layer_normalization", "gemm", "matmul", "softmax", "erf", "slice", "split"):
        assert lookup_op(name) is not None, name


# -- real exports against onnxruntime ------------------------------------------------------------------------
TINY_EXPORTS = [
    # (exporter, opset, attention)
    ("torchscript", 14, "sdpa"),
    ("torchscript", 17, "eager"),
    ("torchscript", 17, "sdpa"),
    ("torchscript", 18, "eager"),
    ("torchscript", 20, "sdpa"),
    ("dynamo", 18, "sdpa"),
    ("dynamo", 18, "eager"),
    ("dynamo", 20, "sdpa"),
]  # the same set test_export.py builds, so the cached exports are shared


def _ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _token_ids(vocab: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=shape).astype(np.int64)


def _check_against_onnxruntime(path: Path, shapes: list[tuple[int, int]], vocab: int) -> None:
    module = import_onnx(path)
    verify_module(module)
    logits_type = module.main.result_types[0]
    assert logits_type.rank == 3 and logits_type.shape[2] == vocab
    assert all(isinstance(d, Sym) for d in logits_type.shape[:2]), logits_type  # symbolic batch and seq
    interp = Interpreter(module, check_types=vocab < 1000)  # every result against its (symbolic) type
    session = _ort_session(path)
    for shape in shapes:
        ids = _token_ids(vocab, shape)
        ours = interp.run({"input_ids": ids})["logits"]
        ref = session.run(["logits"], {"input_ids": ids})[0]
        assert ours.shape == ref.shape == (*shape, vocab)
        assert np.abs(ours - ref).max() <= 1e-4, (shape, float(np.abs(ours - ref).max()))
        assert np.array_equal(ours.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize(
    ("exporter", "opset", "attn"), TINY_EXPORTS, ids=[f"{e}-opset{o}-{a}" for e, o, a in TINY_EXPORTS]
)
def test_gpt_tiny_matches_onnxruntime(exporter: str, opset: int, attn: str) -> None:
    path = exported_model("gpt-tiny", exporter, opset=opset, attn=attn)
    _check_against_onnxruntime(path, [(1, 16), (2, 9)], vocab=512)


def test_nanogpt_opset14_matches_onnxruntime(nanogpt_opset14: Path) -> None:
    _check_against_onnxruntime(nanogpt_opset14, [(1, 16), (2, 9)], vocab=512)


@pytest.mark.parametrize("fixture", ["tiny_torchscript", "tiny_dynamo"])
def test_specialised_import_is_static_everywhere(fixture: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    module = import_onnx(path, shapes={"input_ids": (2, 9)})
    for op in module.main.ops:
        for r in op.results:
            assert r.type.is_static, f"{op.name} at {op.loc}: {r.type}"
    assert str(module.main.result_types[0]) == "tensor<2x9x512xf32>"
    ids = _token_ids(512, (2, 9))
    ours = run_module(module, {"input_ids": ids}, check_types=True)["logits"]
    ref = _ort_session(path).run(["logits"], {"input_ids": ids})[0]
    assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["gpt111m_torchscript", "gpt111m_dynamo"])
def test_cerebras_111m_matches_onnxruntime(fixture: str, request: pytest.FixtureRequest) -> None:
    _check_against_onnxruntime(request.getfixturevalue(fixture), [(1, 128), (2, 64)], vocab=50257)


def test_shape_arithmetic_is_cached_per_input_shape() -> None:
    module, fn, b = _module([TensorType((Sym("n"), 2), "f32")], ["x"])
    shape = b.create("shape", [fn.args[0]]).result
    joined = b.create("concat", [shape], {"axis": 0}).result
    flat = b.create("reshape", [fn.args[0], joined]).result
    fn.set_outputs([flat, shape], ["y", "s"])
    interp = Interpreter(module)
    calls: list[str] = []
    for step in interp._steps:
        kernel, name = step.kernel, step.op.name
        step.kernel = lambda inputs, attrs, kernel=kernel, name=name: (
            calls.append(name),
            kernel(inputs, attrs),
        )[1]
    for n in (3, 3, 5):
        out = interp.run({"x": np.ones((n, 2), np.float32)})
        assert out["y"].shape == (n, 2) and out["s"].tolist() == [n, 2]
    assert calls == ["shape", "concat", "reshape", "reshape", "shape", "concat", "reshape"]
    out["s"][0] = 99  # outputs never alias the cache
    assert interp.run({"x": np.ones((5, 2), np.float32)})["s"].tolist() == [5, 2]

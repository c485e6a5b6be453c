"""The ONNX importer: types, lazy weights, opset forms, and every import error (exact messages)."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cgpt.frontend.onnx_import import (
    MAX_IR_VERSION,
    MAX_OPSET,
    MIN_OPSET,
    WeightValueWarning,
    import_model_proto,
    import_onnx,
)
from cgpt.frontend.onnx_reader import OnnxData
from cgpt.ir.diagnostics import ModelImportError
from cgpt.ir.types import Sym
from cgpt.ir.verifier import verify_module


def _model(nodes, inputs, outputs, initializers=(), opset=17, ir_version=8) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def _linear_model(weight: np.ndarray | None = None) -> onnx.ModelProto:
    """y = x @ w + b with a 64x32 weight (a lazy weight) and a 32-element bias (an inline constant)."""
    w = (
        weight
        if weight is not None
        else np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    )
    return _model(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"], name="/mm"),
            helper.make_node("Add", ["xw", "b"], ["y"], name="/add"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.ones(32, np.float32), "b")],
    )


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def read_onnx_data_for(path: Path) -> OnnxData:
    import mmap

    with open(path, "rb") as f:
        return OnnxData(path, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), [])


def _error(path_or_model, **kwargs) -> str:
    with pytest.raises(ModelImportError) as info:
        if isinstance(path_or_model, onnx.ModelProto):
            import_model_proto(path_or_model, **kwargs)
        else:
            import_onnx(path_or_model, **kwargs)
    text = info.value.headline()
    assert "\n" not in text
    return text


# -- structure and types -------------------------------------------------------------------------------------
def test_weights_are_lazy_views_of_the_file(tmp_path: Path) -> None:
    path = _save(_linear_model(), tmp_path / "m.onnx")
    module = import_onnx(path)
    verify_module(module)
    ops = [op.name for op in module.main.ops]
    assert ops == ["weight", "matmul", "weight", "add"]  # a float vector is a parameter, however short
    w = module.weights["w"]
    assert w.flags.aligned and not w.flags.writeable
    assert np.array_equal(w, numpy_helper.to_array(onnx.load(path).graph.initializer[0]))


def test_aligned_raw_data_is_a_view_and_misaligned_an_aligned_copy(tmp_path: Path) -> None:
    path = tmp_path / "bytes"
    path.write_bytes(bytes(range(64)))
    data = read_onnx_data_for(path)
    view = data.view(data.buffer, 8, np.dtype(np.float32), (4,))
    assert not view.flags.owndata and not view.flags.writeable
    copy = data.view(data.buffer, 9, np.dtype(np.float32), (4,))
    assert copy.flags.owndata and copy.flags.aligned and not copy.flags.writeable
    assert copy.tobytes() == bytes(range(9, 25))


def test_symbolic_dims_from_dim_params_and_fresh_names() -> None:
    model = _model(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", None]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", None]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
    )
    fn = import_model_proto(model).main
    assert [a.type.shape for a in fn.args] == [(Sym("batch"), Sym("d0")), (Sym("batch"), Sym("d1"))]


def test_shapes_specialise_every_input_sharing_a_symbol() -> None:
    model = _model(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", "seq"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
    )
    fn = import_model_proto(model, shapes={"a": (2, 5)}).main
    assert str(fn.args[1].type) == "tensor<2x1xf32>"
    assert str(fn.outputs[0].type) == "tensor<2x5xf32>"


def test_shape_for_an_unknown_input_is_an_error() -> None:
    assert "--shape names input 'ids', which the model does not have (inputs: x)" in _error(
        _linear_model(), shapes={"ids": (1, 2)}
    )


def test_repeated_output_gets_an_identity() -> None:
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [4]),
        ],
    )
    fn = import_model_proto(model).main
    assert fn.output_names == ["y", "y"]
    assert fn.outputs[0] is not fn.outputs[1] and fn.outputs[1].owner.name == "identity"


def test_unnamed_nodes_get_deterministic_locations() -> None:
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["y"], ["z"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])],
    )
    assert [op.loc.names for op in import_model_proto(model).main.ops] == [("Relu_0",), ("Neg_1",)]


def test_unsorted_nodes_are_sorted() -> None:
    model = _model(
        [
            helper.make_node("Neg", ["y"], ["z"], name="second"),
            helper.make_node("Relu", ["x"], ["y"], name="first"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])],
    )
    assert [op.loc.names[0] for op in import_model_proto(model).main.ops] == ["first", "second"]


def test_stated_static_dims_must_agree_with_inference() -> None:
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"], name="/relu")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])],
    )
    assert _error(model) == (
        "<model>: node '/relu': error: 'y' is inferred as tensor<4xf32>, but the model states [5] (dim 0)"
    )


def test_nan_in_a_small_weight_warns_at_import(tmp_path: Path) -> None:
    w = np.ones((64, 32), np.float32)
    w[3, 4] = np.nan
    with pytest.warns(WeightValueWarning, match="weight 'w' holds NaN or Inf values"):
        import_onnx(_save(_linear_model(w), tmp_path / "m.onnx"))


# -- malformed files -----------------------------------------------------------------------------------------
def test_truncated_file(tmp_path: Path) -> None:
    data = _linear_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert _error(path) == f"{path}: error: not a complete ONNX model: the protobuf is truncated"


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert re.fullmatch(rf"{re.escape(str(path))}: error: not (an|a complete) ONNX model: .*", _error(path))


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert _error(tmp_path / "empty.onnx").endswith("error: not an ONNX model: the file is empty")
    assert _error(tmp_path / "absent.onnx") == f"{tmp_path / 'absent.onnx'}: error: no such file"


def test_ir_version_too_new() -> None:
    model = _linear_model()
    model.ir_version = MAX_IR_VERSION + 1
    assert f"IR version {MAX_IR_VERSION + 1} is not supported (supported: 3 to {MAX_IR_VERSION})" in _error(
        model
    )


def test_opset_too_new_and_too_old() -> None:
    model = _linear_model()
    model.opset_import[0].version = MAX_OPSET + 1
    assert f"opset {MAX_OPSET + 1} is not supported (supported: opsets {MIN_OPSET} to {MAX_OPSET})" in _error(
        model
    )
    model.opset_import[0].version = 9
    assert f"opset 9 is not supported (supported: opsets {MIN_OPSET} to {MAX_OPSET})" in _error(model)


def test_dangling_input_names_the_node() -> None:
    model = _model(
        [helper.make_node("Add", ["x", "ghost"], ["y"], name="/add")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    assert _error(model) == (
        "<model>: node '/add': error: input 'ghost' is produced by no node and is neither a "
        "graph input nor an initializer"
    )


def test_initializer_without_its_data() -> None:
    model = _linear_model()
    model.graph.initializer[0].ClearField("raw_data")
    assert (
        _error(model)
        == "<model>: tensor 'w': error: the tensor has no data: tensor<64x32xf32> needs 2048 values"
    )


def test_cycle_is_reported_with_its_nodes() -> None:
    model = _model(
        [
            helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
            helper.make_node("Relu", ["a"], ["b"], name="n2"),
            helper.make_node("Neg", ["a"], ["y"], name="n3"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    assert _error(model) == "<model>: error: the graph has a cycle through 3 nodes ('n1', 'n2', 'n3')"


def test_unsupported_ops_are_listed_at_once() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="/r"),
        helper.make_node("LpNormalization", ["r"], ["a"], name="/lp0"),
        helper.make_node("LpNormalization", ["a"], ["b"], name="/lp1"),
        helper.make_node("Hardmax", ["b"], ["c"], name="/hm"),
        helper.make_node("FusedMatMul", ["c", "c"], ["y"], name="/fm", domain="com.microsoft"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
    )
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert _error(model) == (
        "<model>: error: 3 unsupported op types at opset 17: Hardmax (x1, first '/hm'), "
        "LpNormalization (x2, first '/lp0'), com.microsoft.FusedMatMul (x1, first '/fm')"
    )


def test_unsupported_element_type() -> None:
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [4])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [4])],
    )
    assert "input 'x' has element type double, which the IR does not have" in _error(model)


# -- external data -------------------------------------------------------------------------------------------
def _external_model(tmp_path: Path, location: str, offset: int = 0, length: int | None = None) -> Path:
    model = _linear_model()
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        w.external_data.add(key=k, value=v)
    (tmp_path / "model").mkdir(exist_ok=True)
    return _save(model, tmp_path / "model" / "m.onnx")


def _weight_bytes() -> bytes:
    return np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32).tobytes()


def test_external_data_single_file_is_memory_mapped(tmp_path: Path) -> None:
    path = _external_model(tmp_path, "weights.bin", offset=4096)
    (tmp_path / "model" / "weights.bin").write_bytes(b"\0" * 4096 + _weight_bytes())
    module = import_onnx(path)
    w = module.weights["w"]
    assert not w.flags.owndata
    assert w.tobytes() == _weight_bytes()


def test_external_data_one_file_per_tensor_in_a_subdirectory(tmp_path: Path) -> None:
    path = _external_model(tmp_path, "data/w")
    (tmp_path / "model" / "data").mkdir()
    (tmp_path / "model" / "data" / "w").write_bytes(_weight_bytes())
    assert import_onnx(path).weights["w"].tobytes() == _weight_bytes()


def test_external_data_absolute_path_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    target.write_bytes(_weight_bytes())
    path = _external_model(tmp_path, str(target))
    assert _error(path) == (
        f"{path}: tensor 'w': error: refusing external data file '{target}': absolute paths are not allowed"
    )


def test_external_data_dotdot_is_refused(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(_weight_bytes())
    path = _external_model(tmp_path, "../w.bin")
    assert (
        _error(path)
        == f"{path}: tensor 'w': error: refusing external data file '../w.bin': '..' is not allowed"
    )


def test_external_data_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(_weight_bytes())
    path = _external_model(tmp_path, "w.bin")
    os.symlink(tmp_path / "secret.bin", tmp_path / "model" / "w.bin")
    assert _error(path).startswith(
        f"{path}: tensor 'w': error: refusing external data file 'w.bin': it resolves "
        f"outside the model's directory"
    )


def test_external_data_file_too_short(tmp_path: Path) -> None:
    path = _external_model(tmp_path, "w.bin", offset=100)
    (tmp_path / "model" / "w.bin").write_bytes(_weight_bytes())
    assert _error(path) == (
        f"{path}: tensor 'w': error: external data file 'w.bin' is too short: 8192 bytes, but "
        f"the tensor needs bytes 100 to 8292"
    )


def test_external_data_missing_file(tmp_path: Path) -> None:
    path = _external_model(tmp_path, "nowhere.bin")
    assert _error(path) == f"{path}: tensor 'w': error: external data file 'nowhere.bin' does not exist"


# -- opset forms and optional inputs, checked against onnxruntime --------------------------------------------
def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


OPSET_FORMS = {
    "reduce_mean_axes_attribute_opset13": (
        13,
        [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=0)],
        {},
    ),
    "reduce_mean_axes_input_opset18": (
        18,
        [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)],
        {"axes": _i64(-1)},
    ),
    "reduce_sum_axes_input_opset13": (
        13,
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"])],
        {"axes": _i64(0, 2)},
    ),
    "split_input_opset13": (
        13,
        [helper.make_node("Split", ["x", "split"], ["y", "z"], axis=2)],
        {"split": _i64(1, 3)},
    ),
    "split_equal_opset13": (13, [helper.make_node("Split", ["x"], ["y", "z"], axis=2)], {}),
    "split_num_outputs_opset18": (
        18,
        [helper.make_node("Split", ["x"], ["y", "z"], axis=2, num_outputs=2)],
        {},
    ),
    "squeeze_unsqueeze_axes_inputs_opset13": (
        13,
        [helper.make_node("Unsqueeze", ["x", "a"], ["u"]), helper.make_node("Squeeze", ["u", "a"], ["y"])],
        {"a": _i64(0)},
    ),
    "slice_steps_without_axes": (
        17,
        [helper.make_node("Slice", ["x", "starts", "ends", "", "steps"], ["y"])],
        {"starts": _i64(0, 2, 3), "ends": _i64(2, 0, 0), "steps": _i64(1, -1, -2)},
    ),
    "clip_max_without_min": (
        17,
        [helper.make_node("Clip", ["x", "", "hi"], ["y"])],
        {"hi": np.array(0.5, np.float32)},
    ),
    "softmax_axis_opset13": (13, [helper.make_node("Softmax", ["x"], ["y"], axis=1)], {}),
    "cast_to_int64": (19, [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64)], {}),
}


@pytest.mark.parametrize("form", sorted(OPSET_FORMS))
def test_opset_forms_match_onnxruntime(form: str) -> None:
    import onnxruntime as ort

    from cgpt.backends.reference.interpreter import run_module

    opset, nodes, consts = OPSET_FORMS[form]
    outputs = [o for o in nodes[-1].output if o]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        inits,
        opset=opset,
    )
    x = (np.random.default_rng(3).standard_normal((2, 3, 4)) * 4).astype(np.float32)
    ours = run_module(import_model_proto(model), {"x": x}, check_types=True)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        outputs, {"x": x}
    )
    for name, want in zip(outputs, ref, strict=True):
        assert ours[name].shape == want.shape and ours[name].dtype == want.dtype
        np.testing.assert_allclose(ours[name], want, rtol=1e-6, atol=1e-6)


def test_inf_in_a_large_weight_warns_when_first_loaded(tmp_path: Path) -> None:
    w = np.zeros((256, 512), np.float32)
    w[7, 9] = np.inf
    model = _model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512])],
        [numpy_helper.from_array(w, "w")],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = import_onnx(_save(model, tmp_path / "m.onnx"))  # too large to check at import
    with pytest.warns(WeightValueWarning, match="weight 'w' holds NaN or Inf values"):
        module.weights["w"]


@pytest.mark.parametrize("one_file", [True, False], ids=["single-file", "file-per-tensor"])
def test_onnx_saved_external_data_layouts(tiny_torchscript: Path, tmp_path: Path, one_file: bool) -> None:
    import onnxruntime as ort

    from cgpt.backends.reference.interpreter import run_module

    model = onnx.load(tiny_torchscript)
    path = tmp_path / "ext.onnx"
    onnx.save(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=one_file,
        location="ext.onnx.data" if one_file else None,
        size_threshold=1024,
    )
    module = import_onnx(path)
    w = module.weights[next(iter(module.weights))]
    assert not w.flags.writeable
    ids = np.random.default_rng(0).integers(0, 512, (1, 7)).astype(np.int64)
    ours = run_module(module, {"input_ids": ids})["logits"]
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"input_ids": ids}
    )[0]
    assert np.abs(ours - ref).max() <= 1e-4


def test_import_fuzz_corrupt_files_fail_cleanly(tiny_torchscript: Path, tmp_path: Path) -> None:
    """Truncated and bit-flipped exports either import or raise ModelImportError, never anything else."""
    examples = int(os.environ.get("CGPT_FUZZ_EXAMPLES", "150"))
    source = tiny_torchscript.read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "fuzz.onnx"
    for i in range(examples):
        data = bytearray(source)
        if i % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 8))):
                data[int(rng.integers(0, min(len(data), 60_000)))] = int(rng.integers(0, 256))
        path.write_bytes(bytes(data))
        try:
            import_onnx(path)
        except ModelImportError as err:
            assert "\n" not in err.headline()

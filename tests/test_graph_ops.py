"""Graph ops against onnxruntime (one-node models: kernel values and inferred types), symbolic shape inference and
folding, op verifiers, and the registry's declarations (docstring examples parse and verify)."""

from __future__ import annotations

import inspect
import re
from typing import Any

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from cgpt.ir.builder import Builder
from cgpt.ir.core import Function, Operation, Value
from cgpt.ir.diagnostics import VerifyError
from cgpt.ir.parser import parse_module
from cgpt.ir.registry import Attr, Cost, InferContext, all_ops, check_attr_value, lookup_op
from cgpt.ir.types import NUMPY_DTYPES, Sym, TensorType, type_of_array
from cgpt.ir.verifier import verify_module

ONNX_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.bool_): TensorProto.BOOL,
}
RNG = np.random.default_rng(1234)
INT64_MAX = np.iinfo(np.int64).max
GRAPH_OPS = [name for name, op in all_ops().items() if op.level == "graph"]


def rand(shape: tuple[int, ...], dtype: str = "f32", low: float = -3, high: float = 3) -> np.ndarray:
    if dtype == "bool":
        return np.asarray(RNG.random(shape) < 0.5)
    dt = NUMPY_DTYPES[dtype]
    if dt.kind in "iu":
        return np.asarray(RNG.integers(int(low), int(high) + 1, size=shape), dtype=dt)
    return np.asarray(RNG.uniform(low, high, size=shape), dtype=dt)


def i64(values: Any) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def run_ort(op_type: str, inputs: list[np.ndarray | None], attrs: dict[str, Any], n_out: int, opset: int
            ) -> list[np.ndarray]:
    names = ["" if a is None else f"in{i}" for i, a in enumerate(inputs)]
    node = helper.make_node(op_type, names, [f"out{i}" for i in range(n_out)], **attrs)
    graph = helper.make_graph(
        [node], "one_node",
        [helper.make_tensor_value_info(n, ONNX_TYPES[a.dtype], a.shape)
         for n, a in zip(names, inputs, strict=True) if n],
        [helper.make_empty_tensor_value_info(f"out{i}") for i in range(n_out)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {n: a for n, a in zip(names, inputs, strict=True) if n})


def ir_attrs_of(op: str, onnx_attrs: dict[str, Any]) -> dict[str, Any]:
    """ONNX attribute values as the kinds the op declares (what the importer does)."""
    specs = lookup_op(op).attributes
    out: dict[str, Any] = {}
    for key, value in onnx_attrs.items():
        kind = specs[key].kind
        if kind == "bool":
            value = bool(value)
        elif kind in ("ints", "dims"):
            value = tuple(int(v) for v in value)
        elif kind == "dense":
            value = np.asarray(value)
        out[key] = value
    return out


def assert_same(got: np.ndarray, want: np.ndarray, rtol: float | None, atol: float | None) -> None:
    got = np.asarray(got)
    assert got.dtype == want.dtype, f"dtype {got.dtype}, onnxruntime {want.dtype}"
    assert got.shape == want.shape, f"shape {got.shape}, onnxruntime {want.shape}"
    if want.dtype.kind in "iub":
        np.testing.assert_array_equal(got, want)
        return
    default = 1e-6 if want.dtype == np.float32 else 2e-3
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol or default,
                               atol=atol if atol is not None else 0.0, equal_nan=True)


def check(op: str, onnx_type: str, inputs: list[np.ndarray | None], attrs: dict[str, Any] | None = None, *,
          ir_attrs: dict[str, Any] | None = None, n_out: int = 1, opset: int = 21,
          as_attrs: dict[int, str] | None = None, rtol: float | None = None, atol: float | None = None
          ) -> list[np.ndarray]:
    """Run `onnx_type` in onnxruntime and `op`'s kernel and infer on the same inputs; compare them.

    Small operands are known values (as constants are to the builder). `as_attrs` names trailing operands to
    check again in attribute form ({operand index: attribute name}).
    """
    attrs = attrs or {}
    while inputs and inputs[-1] is None:
        inputs = inputs[:-1]
    want = run_ort(onnx_type, inputs, attrs, n_out, opset)
    opdef = lookup_op(op)
    full = opdef.with_defaults(ir_attrs if ir_attrs is not None else ir_attrs_of(op, attrs))
    forms = [(list(inputs), full)]
    if as_attrs:
        first = min(as_attrs)
        moved = dict(full)
        for index, name in as_attrs.items():
            value = inputs[index]
            moved[name] = int(value.reshape(())) if opdef.attributes[name].kind == "int" else tuple(
                int(v) for v in value.reshape(-1))
        forms.append((list(inputs[:first]), moved))
    for operands, attributes in forms:
        got = opdef.kernel(operands, attributes)
        got = got if isinstance(got, list) else [got]
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w, rtol, atol)
        types = [None if a is None else type_of_array(a) for a in operands]
        values = [a if a is not None and a.size <= 64 else None for a in operands]
        inferred = opdef.infer(InferContext(op, types, attributes, values))
        assert inferred == [type_of_array(w) for w in want]
    return want


# -- elementwise -----------------------------------------------------------------------------------------------------
UNARY = [("sqrt", "Sqrt", 0.1, 4), ("erf", "Erf", -3, 3), ("tanh", "Tanh", -3, 3), ("exp", "Exp", -3, 3),
         ("log", "Log", 0.1, 4), ("reciprocal", "Reciprocal", 0.5, 3), ("sigmoid", "Sigmoid", -6, 6),
         ("neg", "Neg", -3, 3), ("abs", "Abs", -3, 3), ("relu", "Relu", -3, 3)]


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("op,onnx_type,low,high", UNARY, ids=[u[0] for u in UNARY])
def test_unary_float_ops_match_onnxruntime(op: str, onnx_type: str, low: float, high: float, dtype: str) -> None:
    for shape in [(), (7,), (2, 3, 5)]:
        # ORT's tanh/erf/sigmoid are vectorised approximations, good to a few ulp (and 4e-8 absolute in tails)
        approximated = op in ("tanh", "erf", "sigmoid") and dtype == "f32"
        check(op, onnx_type, [rand(shape, dtype, low, high)], rtol=4e-6 if approximated else None,
              atol=1e-7 if approximated else None)


@pytest.mark.parametrize("op,onnx_type,dtype", [("neg", "Neg", "i64"), ("abs", "Abs", "i32"), ("relu", "Relu", "i32")])
def test_unary_integer_ops_match_onnxruntime(op: str, onnx_type: str, dtype: str) -> None:
    check(op, onnx_type, [rand((4, 5), dtype, -9, 9)])


BROADCAST_PAIRS = [((2, 3), (3,)), ((2, 1, 4), (3, 1)), ((), (2, 2)), ((4,), (4,)), ((1,), (2, 3, 1))]


@pytest.mark.parametrize("dtype", ["f32", "f16", "i32", "i64"])
@pytest.mark.parametrize("op,onnx_type", [("add", "Add"), ("sub", "Sub"), ("mul", "Mul"), ("div", "Div")])
def test_arithmetic_broadcasts_like_onnxruntime(op: str, onnx_type: str, dtype: str) -> None:
    for a, b in BROADCAST_PAIRS:
        y = rand(b, dtype, -9, 9)
        if op == "div":  # integer division truncates toward zero: keep divisors away from 0, signs mixed
            y = np.where(np.abs(y) < 1, np.ones_like(y) * 3, y).astype(y.dtype)
        check(op, onnx_type, [rand(a, dtype, -9, 9), y])


def test_pow_keeps_the_base_dtype() -> None:
    check("pow", "Pow", [rand((2, 3), "f32", 0.1, 3), rand((3,), "f32", -2, 2)], rtol=2e-6)
    check("pow", "Pow", [rand((2, 3), "f32", -3, 3), i64([2])])
    check("pow", "Pow", [rand((2, 3), "f16", 0.1, 3), rand((), "f16", 0, 2)])
    check("pow", "Pow", [rand((2, 3), "i64", -5, 5), i64([0, 1, 3])])


@pytest.mark.parametrize("op,onnx_type", [("equal", "Equal"), ("less", "Less"), ("less_or_equal", "LessOrEqual"),
                                          ("greater", "Greater"), ("greater_or_equal", "GreaterOrEqual")])
@pytest.mark.parametrize("dtype", ["f32", "f16", "i64"])
def test_comparisons_match_onnxruntime(op: str, onnx_type: str, dtype: str) -> None:
    for a, b in BROADCAST_PAIRS:
        x, y = (np.asarray(rand(shape, dtype, -2, 2).round(), dtype=NUMPY_DTYPES[dtype]) for shape in (a, b))
        check(op, onnx_type, [x, y])  # rounded, so that equal values occur
    if op == "equal" and dtype == "i64":
        check(op, onnx_type, [rand((3, 4), "bool"), rand((4,), "bool")])


def test_logic_ops_match_onnxruntime() -> None:
    for a, b in BROADCAST_PAIRS:
        check("and", "And", [rand(a, "bool"), rand(b, "bool")])
        check("or", "Or", [rand(a, "bool"), rand(b, "bool")])
    check("not", "Not", [rand((3, 4), "bool")])


def test_where_broadcasts_three_ways() -> None:
    check("where", "Where", [rand((1, 1, 4, 4), "bool"), rand((2, 3, 4, 4)), np.array(-1e4, np.float32)])
    check("where", "Where", [rand((4,), "bool"), rand((3, 1), "i64"), rand((), "i64")])
    check("where", "Where", [rand((2, 4), "bool"), rand((2, 4), "f16"), rand((4,), "f16")])


def test_is_nan_and_is_inf_with_detect_flags() -> None:
    x = np.array([1.0, np.nan, np.inf, -np.inf, -2.0, 0.0], dtype=np.float32)
    check("is_nan", "IsNaN", [x])
    check("is_nan", "IsNaN", [x.astype(np.float16)])
    for neg in (0, 1):
        for pos in (0, 1):
            check("is_inf", "IsInf", [x], {"detect_negative": neg, "detect_positive": pos}, opset=20)


CASTS = [("f32", TensorProto.INT64, "i64"), ("f32", TensorProto.INT32, "i32"), ("f32", TensorProto.FLOAT16, "f16"),
         ("f32", TensorProto.BOOL, "bool"), ("i64", TensorProto.FLOAT, "f32"), ("bool", TensorProto.FLOAT, "f32"),
         ("f16", TensorProto.FLOAT, "f32"), ("i64", TensorProto.INT32, "i32"), ("i32", TensorProto.BOOL, "bool")]


@pytest.mark.parametrize("src,onnx_to,to", CASTS, ids=[f"{c[0]}-{c[2]}" for c in CASTS])
def test_cast_truncates_and_converts_like_onnxruntime(src: str, onnx_to: int, to: str) -> None:
    x = rand((3, 5), src, -5, 5)
    if src == "f32":
        x[0, :3] = [0.0, -0.0, -2.7]  # zeros to bool, negative fractions toward zero
    check("cast", "Cast", [x], {"to": onnx_to}, ir_attrs={"to": to})


@pytest.mark.parametrize("op,onnx_type", [("max", "Max"), ("min", "Min")])
def test_variadic_max_min_broadcast(op: str, onnx_type: str) -> None:
    check(op, onnx_type, [rand((2, 3))])
    check(op, onnx_type, [rand((2, 3)), rand((3,))])
    check(op, onnx_type, [rand((2, 1, 3), "i64"), rand((4, 1), "i64"), rand((), "i64")])
    check(op, onnx_type, [rand((5,), "f16"), rand((5,), "f16")])


def test_clip_with_either_or_both_bounds() -> None:
    x = rand((3, 4))
    lo, hi = np.array(-1.0, np.float32), np.array(0.5, np.float32)
    check("clip", "Clip", [x, lo, hi])
    check("clip", "Clip", [x, lo])
    check("clip", "Clip", [x])
    check("clip", "Clip", [x, hi, lo])  # min > max: everything becomes max
    check("clip", "Clip", [rand((6,), "i64", -9, 9), i64(-2), i64(3)])
    check("clip", "Clip", [rand((6,), "f16"), np.array(-1, np.float16), np.array(1, np.float16)])


# -- linalg, nn ------------------------------------------------------------------------------------------------------
MATMUL_SHAPES = [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 5)), ((4,), (4, 5)), ((3, 4), (4,)),
                 ((4,), (4,)), ((2, 3, 4), (2, 4, 6))]


@pytest.mark.parametrize("dtype", ["f32", "f16", "i64"])
def test_matmul_batches_broadcasts_and_promotes_vectors(dtype: str) -> None:
    for a, b in MATMUL_SHAPES:
        check("matmul", "MatMul", [rand(a, dtype), rand(b, dtype)], rtol=1e-5 if dtype == "f32" else None,
              atol=1e-5 if dtype == "f32" else 1e-2)


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_transposes_scales_and_adds_bias(trans_a: int, trans_b: int) -> None:
    a = rand((4, 3) if trans_a else (3, 4))
    b = rand((5, 4) if trans_b else (4, 5))
    attrs = {"transA": trans_a, "transB": trans_b}
    for c in [None, rand((5,)), rand((3, 5)), rand((1, 5)), rand(())]:
        check("gemm", "Gemm", [a, b, c], attrs, rtol=1e-5, atol=1e-5)
    check("gemm", "Gemm", [a, b, rand((5,))], {**attrs, "alpha": 0.5, "beta": 2.0}, rtol=1e-5, atol=1e-5)
    check("gemm", "Gemm", [a.astype(np.float16), b.astype(np.float16)], attrs, atol=1e-2)


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_softmax_along_any_axis(dtype: str) -> None:
    x = rand((2, 3, 5), dtype, -5, 5)
    for axis in (-1, 0, 1, 2):
        check("softmax", "Softmax", [x], {"axis": axis}, rtol=1e-5, atol=1e-7)
    check("softmax", "Softmax", [x])


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_layer_normalization_over_trailing_dims(dtype: str) -> None:
    x = rand((2, 3, 8), dtype)
    check("layer_normalization", "LayerNormalization", [x, rand((8,), dtype), rand((8,), dtype)], atol=1e-5)
    check("layer_normalization", "LayerNormalization", [x, rand((8,), dtype)], {"epsilon": 1e-3}, atol=1e-5)
    check("layer_normalization", "LayerNormalization", [x, rand((3, 8), dtype), rand((8,), dtype)], {"axis": -2},
          atol=1e-5)
    check("layer_normalization", "LayerNormalization", [x, rand((3, 1), dtype)], {"axis": 1}, atol=1e-5)


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_exact_and_tanh(approximate: str, dtype: str) -> None:
    check("gelu", "Gelu", [rand((3, 16), dtype, -5, 5)], {"approximate": approximate}, rtol=1e-5, atol=1e-6)


# -- reductions ------------------------------------------------------------------------------------------------------
REDUCE = [("reduce_sum", "ReduceSum"), ("reduce_mean", "ReduceMean"), ("reduce_max", "ReduceMax"),
          ("reduce_min", "ReduceMin"), ("reduce_prod", "ReduceProd")]


@pytest.mark.parametrize("op,onnx_type", REDUCE, ids=[r[0] for r in REDUCE])
def test_reductions_with_axes_operand_and_attribute(op: str, onnx_type: str) -> None:
    x = rand((2, 3, 4), "f32", 0.5, 1.5)
    for axes in ([-1], [0, 2], [1]):
        for keepdims in (0, 1):
            check(op, onnx_type, [x, i64(axes)], {"keepdims": keepdims}, opset=18, as_attrs={1: "axes"}, rtol=1e-5)
    check(op, onnx_type, [x], opset=18, rtol=1e-5)
    check(op, onnx_type, [x], {"keepdims": 0}, opset=18, rtol=1e-5)
    check(op, onnx_type, [x], {"noop_with_empty_axes": 1}, opset=18)
    check(op, onnx_type, [rand((3, 4), "i64", -4, 4), i64([1])], opset=18)
    check(op, onnx_type, [rand((3, 4), "f16", 0.5, 1.5), i64([0])], {"keepdims": 0}, opset=18)


def test_reduce_mean_attribute_form_of_older_opsets() -> None:
    check("reduce_mean", "ReduceMean", [rand((2, 3, 4))], {"axes": [-1]}, opset=13, rtol=1e-6, atol=1e-7)


# -- shape ops -------------------------------------------------------------------------------------------------------
RESHAPES = [((2, 3, 4), [0, 0, 2, 2], 0), ((2, 3, 4), [-1, 4], 0), ((2, 3, 4), [4, -1], 0), ((2, 3, 4), [24], 0),
            ((2, 3, 4), [0, -1], 0), ((2, 0, 4), [0, 4], 1), ((1, 6), [], 0)]


@pytest.mark.parametrize("shape,target,allowzero", RESHAPES, ids=[str(r[1]) for r in RESHAPES])
def test_reshape_copies_zeros_and_infers_minus_one(shape: tuple[int, ...], target: list[int], allowzero: int) -> None:
    if target == []:
        shape = (1, 1)
    check("reshape", "Reshape", [rand(shape), i64(target)], {"allowzero": allowzero}, as_attrs={1: "shape"})


def test_flatten_at_every_axis() -> None:
    x = rand((2, 3, 4))
    for axis in (0, 1, 2, 3, -1, -3):
        check("flatten", "Flatten", [x], {"axis": axis})


def test_squeeze_and_unsqueeze_with_negative_axes() -> None:
    x = rand((1, 3, 1, 4))
    for axes in ([0], [-2], [0, 2]):
        check("squeeze", "Squeeze", [x, i64(axes)], as_attrs={1: "axes"})
    check("squeeze", "Squeeze", [x])
    for axes in ([0], [-1], [1, 3], [0, -1]):
        check("unsqueeze", "Unsqueeze", [rand((3, 4)), i64(axes)], as_attrs={1: "axes"})
    check("unsqueeze", "Unsqueeze", [np.array(7, np.int64), i64([0])])


def test_transpose_default_and_explicit_perm() -> None:
    x = rand((2, 3, 4, 5))
    check("transpose", "Transpose", [x])
    check("transpose", "Transpose", [x], {"perm": [0, 2, 1, 3]})
    check("transpose", "Transpose", [rand((2, 3), "i64")], {"perm": [1, 0]})


def test_expand_broadcasts_both_ways() -> None:
    check("expand", "Expand", [rand((3, 1)), i64([2, 1, 4])], as_attrs={1: "shape"})
    check("expand", "Expand", [rand((2, 1, 4), "i64"), i64([3, 1])], as_attrs={1: "shape"})
    check("expand", "Expand", [rand((1, 1, 4, 4), "bool"), i64([2, 1, 4, 4])], as_attrs={1: "shape"})


def test_concat_along_negative_axis() -> None:
    check("concat", "Concat", [rand((2, 3)), rand((2, 1)), rand((2, 4))], {"axis": -1})
    check("concat", "Concat", [i64([1, 2]), i64([3]), i64([4, 5])], {"axis": 0})


def test_split_by_sizes_and_into_equal_parts() -> None:
    x = rand((2, 7))
    check("split", "Split", [x, i64([1, 2, 4])], {"axis": 1}, n_out=3, opset=18, as_attrs={1: "split"})
    check("split", "Split", [x], {"axis": -1, "num_outputs": 3}, n_out=3, opset=18)
    check("split", "Split", [rand((6, 2))], {"num_outputs": 2}, n_out=2, opset=18)


def test_shape_size_and_identity() -> None:
    x = rand((2, 3, 4))
    for attrs in ({}, {"start": 1}, {"end": -1}, {"start": -2, "end": 3}, {"start": 5}):
        check("shape", "Shape", [x], attrs)
    check("size", "Size", [x])
    check("identity", "Identity", [x])


def test_constant_of_shape_fills_value() -> None:
    from onnx import numpy_helper

    check("constant_of_shape", "ConstantOfShape", [i64([2, 3])])
    value = np.array([7], dtype=np.int64)
    check("constant_of_shape", "ConstantOfShape", [i64([4])], {"value": numpy_helper.from_array(value)},
          ir_attrs={"value": value})
    check("constant_of_shape", "ConstantOfShape", [i64([])])


def test_range_counts_like_onnx() -> None:
    check("range", "Range", [i64(0), i64(10), i64(3)])
    check("range", "Range", [i64(10), i64(4), i64(-2)])
    check("range", "Range", [i64(5), i64(5), i64(1)])
    check("range", "Range", [np.array(0.5, np.float32), np.array(3.0, np.float32), np.array(0.5, np.float32)])


# -- indexing --------------------------------------------------------------------------------------------------------
SLICES = [([1], [3], None, None), ([0, 1], [2, INT64_MAX], [0, 2], None), ([-1], [-INT64_MAX], [1], [-1]),
          ([3], [0], [2], [-2]), ([-10], [10], [0], [2]), ([0, 0], [1, -1], [-1, -3], [1, 1]),
          ([5], [9], [2], None)]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES, ids=[str(i) for i in range(len(SLICES))])
def test_slice_clamps_and_steps_like_onnx(starts: list[int], ends: list[int], axes: list[int] | None,
                                          steps: list[int] | None) -> None:
    x = rand((3, 4, 5))
    inputs = [x, i64(starts), i64(ends), None if axes is None else i64(axes), None if steps is None else i64(steps)]
    if axes is None and steps is not None:
        inputs[3] = i64(range(len(starts)))
    names = {1: "starts", 2: "ends", 3: "axes", 4: "steps"}
    check("slice", "Slice", inputs, as_attrs={i: names[i] for i in range(1, 5) if inputs[i] is not None})


def test_gather_scalar_and_nd_indices_on_any_axis() -> None:
    x = rand((4, 5, 6))
    check("gather", "Gather", [x, i64(2)])
    check("gather", "Gather", [x, i64([[0, -1], [3, 1]])], {"axis": 1})
    check("gather", "Gather", [x, np.array([5, -6, 0], dtype=np.int32)], {"axis": -1})
    check("gather", "Gather", [i64([7, 8, 9]), i64(-1)])


def test_gather_nd_with_batch_dims() -> None:
    x = rand((4, 5, 6))
    check("gather_nd", "GatherND", [x, i64([[0, 1], [3, -1], [2, 4]])])
    check("gather_nd", "GatherND", [x, i64([[[1]], [[-2]]])])
    check("gather_nd", "GatherND", [x, i64([[1], [0], [4], [2]])], {"batch_dims": 1})
    check("gather_nd", "GatherND", [x, i64([[[1, 2], [0, 5]]] * 4)], {"batch_dims": 1})


def test_scatter_nd_replaces_and_reduces() -> None:
    data = rand((8,))
    idx = i64([[4], [3], [1], [7]])
    for reduction in ("none", "add", "mul", "max", "min"):
        check("scatter_nd", "ScatterND", [data, idx, rand((4,))], {"reduction": reduction}, opset=18)
    check("scatter_nd", "ScatterND", [rand((4, 3, 2)), i64([[0, 1], [3, 2]]), rand((2, 2))], opset=18)


def test_trilu_upper_lower_with_diagonal_offset() -> None:
    x = rand((2, 4, 5))
    for upper in (0, 1):
        check("trilu", "Trilu", [x], {"upper": upper})
        for k in (-1, 2):
            check("trilu", "Trilu", [x, i64(k)], {"upper": upper})
    check("trilu", "Trilu", [rand((3, 3), "bool")], {"upper": 0})


@pytest.mark.parametrize("dtype", ["f32", "i64", "i32"])
def test_cumsum_exclusive_and_reverse(dtype: str) -> None:
    x = rand((3, 4), dtype, -5, 5)
    for axis in (0, 1, -1):
        for exclusive in (0, 1):
            for reverse in (0, 1):
                check("cumsum", "CumSum", [x, i64(axis)], {"exclusive": exclusive, "reverse": reverse},
                      as_attrs={1: "axis"}, rtol=1e-5, atol=1e-6)


# -- bf16: no onnxruntime kernels on CPU; the kernels compute in f32 and round once --------------------------------
BF16_CASES = [("sqrt", 1, {}), ("exp", 1, {}), ("tanh", 1, {}), ("erf", 1, {}), ("sigmoid", 1, {}), ("gelu", 1, {}),
              ("softmax", 1, {}), ("add", 2, {}), ("mul", 2, {}), ("div", 2, {}), ("pow", 2, {}), ("max", 2, {}),
              ("matmul", 2, {}), ("gemm", 3, {}), ("layer_normalization", 3, {}), ("reduce_sum", 1, {"axes": (1,)}),
              ("reduce_mean", 1, {}), ("cumsum", 1, {"axis": 1})]


@pytest.mark.parametrize("op,n,attrs", BF16_CASES, ids=[c[0] for c in BF16_CASES])
def test_bf16_kernels_round_the_f32_result(op: str, n: int, attrs: dict[str, Any]) -> None:
    opdef = lookup_op(op)
    x = rand((4, 4), "f32", 0.1, 2).astype(ml_dtypes.bfloat16)
    inputs = [x, x[0] + 1, x[1]][:n] if op in ("gemm", "layer_normalization") else [x] * n
    got = opdef.kernel(inputs, opdef.with_defaults(attrs))
    want = opdef.kernel([a.astype(np.float32) for a in inputs], opdef.with_defaults(attrs))
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.astype(np.float32), want.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_erf_is_within_eight_ulp_of_the_exact_value() -> None:
    from scipy.special import erf

    x = np.concatenate([np.linspace(-6, 6, 200_001), 10.0 ** np.linspace(-30, 1, 10_001), [0.0, np.inf, -np.inf]])
    x = x.astype(np.float32)
    got = lookup_op("erf").kernel([x], {}).astype(np.float64)
    exact = erf(x.astype(np.float64))
    assert np.all(np.abs(got) <= 1.0) and got[-2] == 1.0 and got[-1] == -1.0
    np.testing.assert_allclose(got, exact, rtol=5e-7, atol=0)


# -- symbolic shapes: inference and folding through the builder --------------------------------------------------
BATCH, SEQ = Sym("batch"), Sym("seq")


@pytest.fixture
def gpt() -> tuple[Builder, Value]:
    fn = Function("main", [TensorType((BATCH, SEQ, 768), "f32")])
    return Builder(fn), fn.args[0]


def new(b: Builder, name: str, operands: list[Value], attrs: dict[str, Any] | None = None) -> Value:
    return b.create(name, operands, attrs or {}).result


def test_shape_of_symbolic_tensor_folds_to_symbols(gpt: tuple[Builder, Value]) -> None:
    b, x = gpt
    s = new(b, "shape", [x])
    value = b.known.get(s)
    assert value.dtype == object and value.tolist() == [BATCH, SEQ, 768] and isinstance(value[0], Sym)
    assert s.type == TensorType((3,), "i64")
    seq = new(b, "gather", [s, b.constant(i64(1))], {"axis": 0})
    assert b.known.get(seq)[()] == SEQ and seq.type == TensorType((), "i64")
    static = new(b, "shape", [x], {"start": 2})
    assert b.known.get(static).dtype == np.int64 and b.known.get(static).tolist() == [768]


def test_concat_of_symbols_feeds_reshape(gpt: tuple[Builder, Value]) -> None:
    b, x = gpt
    s = new(b, "shape", [x])
    dims = [new(b, "unsqueeze", [new(b, "gather", [s, b.constant(i64(i))]), b.constant(i64([0]))]) for i in (0, 1)]
    target = new(b, "concat", [*dims, b.constant(i64([12, 64]))], {"axis": 0})
    assert b.known.get(target).tolist() == [BATCH, SEQ, 12, 64]
    heads = new(b, "reshape", [x, target])
    assert heads.type == TensorType((BATCH, SEQ, 12, 64), "f32")
    assert new(b, "reshape", [x], {"shape": (BATCH, SEQ, 12, 64)}).type == heads.type
    back = new(b, "reshape", [heads, b.constant(i64([0, 0, -1]))])
    assert back.type == x.type


def test_reshape_minus_one_is_a_symbolic_product(gpt: tuple[Builder, Value]) -> None:
    b, x = gpt
    flat = new(b, "reshape", [x, b.constant(i64([-1, 768]))])
    assert flat.type.shape == (BATCH * SEQ, 768) and isinstance(flat.type.shape[0], Sym)
    split = new(b, "reshape", [flat, b.constant(i64([-1, 12, 64]))])
    assert split.type.shape == (BATCH * SEQ, 12, 64)
    again = new(b, "reshape", [flat, b.constant(i64([0, 12, -1]))])
    assert again.type.shape == (BATCH * SEQ, 12, 64)
    unknown = new(b, "reshape", [x, new(b, "shape", [flat])])  # [?(batch*seq), 768]: known, symbolic
    assert unknown.type.shape == (BATCH * SEQ, 768)


def test_reshape_with_unknown_shape_value_knows_only_the_rank() -> None:
    fn = Function("main", [TensorType((2, 3), "f32"), TensorType((4,), "i64")])
    b = Builder(fn)
    assert new(b, "reshape", fn.args).type == TensorType((None, None, None, None), "f32")
    assert new(b, "expand", fn.args).type == TensorType((None, None, 2, 3), "f32")


def test_symbolic_comparisons_fold_only_when_certain(gpt: tuple[Builder, Value]) -> None:
    b, x = gpt
    s = new(b, "shape", [x])
    seq = new(b, "gather", [s, b.constant(i64(1))])
    assert b.known.get(new(b, "equal", [seq, b.constant(i64(5))])) is None
    assert b.known.get(new(b, "equal", [seq, b.constant(i64(-1))]))[()] == np.False_
    assert b.known.get(new(b, "equal", [seq, seq]))[()] == np.True_
    assert b.known.get(new(b, "less", [seq, b.constant(i64(0))]))[()] == np.False_
    assert b.known.get(new(b, "greater_or_equal", [seq, b.constant(i64(0))]))[()] == np.True_
    assert b.known.get(new(b, "less", [seq, b.constant(i64(7))])) is None
    batch = new(b, "gather", [s, b.constant(i64(0))])
    assert b.known.get(new(b, "equal", [seq, batch])) is None
    mask = new(b, "equal", [s, b.constant(i64(-1))])
    assert b.known.get(mask).dtype == np.bool_ and not b.known.get(mask).any()
    picked = new(b, "where", [mask, b.constant(i64([1, 1, 1])), s])
    assert b.known.get(picked).tolist() == [BATCH, SEQ, 768]


def test_symbolic_arithmetic_folds(gpt: tuple[Builder, Value]) -> None:
    b, x = gpt
    s = new(b, "shape", [x])
    batch, seq = (new(b, "gather", [s, b.constant(i64(i))]) for i in (0, 1))
    assert b.known.get(new(b, "mul", [batch, seq]))[()] == BATCH * SEQ
    assert b.known.get(new(b, "sub", [seq, seq])).tolist() == 0
    assert b.known.get(new(b, "add", [seq, b.constant(i64(0))]))[()] == SEQ
    assert b.known.get(new(b, "div", [seq, seq])).tolist() == 1
    assert b.known.get(new(b, "div", [b.constant(i64(-7)), b.constant(i64(2))])).tolist() == -3
    assert b.known.get(new(b, "reduce_prod", [s], {"keepdims": False}))[()] == BATCH * SEQ * 768
    assert b.known.get(new(b, "cast", [s], {"to": "i32"})).tolist() == [BATCH, SEQ, 768]
    assert b.known.get(new(b, "cast", [s], {"to": "f32"})) is None
    assert b.known.get(new(b, "slice", [s, b.constant(i64([1])), b.constant(i64([INT64_MAX]))])).tolist() == [SEQ, 768]
    assert b.known.get(new(b, "identity", [s])).tolist() == [BATCH, SEQ, 768]
    assert b.known.get(new(b, "size", [x]))[()] == BATCH * SEQ * 768
    assert b.known.get(new(b, "max", [seq, b.constant(i64(1))])) is None  # a string compare must never fold


def test_symbolic_dims_flow_through_shape_ops(gpt: tuple[Builder, Value]) -> None:
    b, x = gpt
    s = new(b, "shape", [x])
    seq = new(b, "gather", [s, b.constant(i64(1))])
    pos = new(b, "range", [b.constant(i64(0)), seq, b.constant(i64(1))])
    assert pos.type == TensorType((SEQ,), "i64") and b.known.get(pos) is None
    ones = new(b, "constant_of_shape", [new(b, "slice", [s, b.constant(i64([0])), b.constant(i64([2]))])],
               {"value": np.ones(1, np.float32)})
    assert ones.type == TensorType((BATCH, SEQ), "f32")
    assert new(b, "expand", [b.constant(np.zeros((1, 1), np.float32)), s]).type == x.type
    assert new(b, "flatten", [x], {"axis": 2}).type.shape == (BATCH * SEQ, 768)
    qkv = b.create("split", [new(b, "matmul", [x, b.constant(np.zeros((768, 6), np.float32))])],
                   {"axis": -1, "num_outputs": 3})
    assert [r.type.shape for r in qkv.results] == [(BATCH, SEQ, 2)] * 3
    heads = new(b, "transpose", [new(b, "reshape", [x], {"shape": (0, 0, 12, 64)})], {"perm": (0, 2, 1, 3)})
    assert heads.type.shape == (BATCH, 12, SEQ, 64)
    scores = new(b, "matmul", [heads, new(b, "transpose", [heads], {"perm": (0, 1, 3, 2)})])
    assert scores.type.shape == (BATCH, 12, SEQ, SEQ)
    assert new(b, "softmax", [scores], {"axis": -1}).type == scores.type
    assert new(b, "reduce_mean", [x], {"axes": (-1,)}).type.shape == (BATCH, SEQ, 1)
    assert new(b, "slice", [x], {"starts": (0,), "ends": (SEQ,), "axes": (1,)}).type == x.type
    assert new(b, "slice", [x], {"starts": (0,), "ends": (4,), "axes": (1,)}).type.shape == (BATCH, None, 768)
    assert new(b, "concat", [x, x], {"axis": 1}).type.shape == (BATCH, SEQ + SEQ, 768)


@pytest.mark.parametrize("a,b,want", [(SEQ, 1, SEQ), (SEQ, SEQ, SEQ), (SEQ, 768, 768), (BATCH, SEQ, None),
                                      (None, 1, None), (None, 5, 5), (1, 1, 1)])
def test_broadcasting_of_symbolic_dims(a: Any, b: Any, want: Any) -> None:
    ctx = InferContext("add", [TensorType((a,), "f32"), TensorType((b,), "f32")], {})
    assert lookup_op("add").infer(ctx) == [TensorType((want,), "f32")]


# -- verifiers and type errors -------------------------------------------------------------------------------------
def make_op(name: str, operand_types: list[TensorType], attrs: dict[str, Any]) -> Operation:
    fn = Function("main", operand_types)
    return Operation(name, fn.args, [TensorType((), "f32")], attrs)


@pytest.mark.parametrize("name,types,attrs,message", [
    ("transpose", [TensorType((2, 3), "f32")], {"perm": (0, 0)}, "'perm'"),
    ("softmax", [TensorType((2, 3), "f32")], {"axis": 2}, "'axis' = 2 is out of range"),
    ("reshape", [TensorType((2, 3), "f32"), TensorType((1,), "i64")], {"shape": (6,)}, "both"),
    ("reshape", [TensorType((2, 3), "f32")], {}, "'shape' is missing"),
    ("slice", [TensorType((2, 3), "f32")], {"starts": (0,), "ends": (1, 2)}, "one length"),
    ("slice", [TensorType((2, 3), "f32")], {"starts": (0,), "ends": (1,), "steps": (0,)}, "'steps'"),
    ("unsqueeze", [TensorType((2, 3), "f32")], {"axes": (3,)}, "'axes' = 3"),
    ("concat", [TensorType((2, 3), "f32")], {"axis": -3}, "'axis'"),
    ("cumsum", [TensorType((2, 3), "f32")], {}, "'axis' is missing"),
])
def test_verify_names_op_and_attribute(name: str, types: list[TensorType], attrs: dict[str, Any], message: str
                                       ) -> None:
    with pytest.raises(VerifyError, match=re.escape(message)) as err:
        lookup_op(name).verify(make_op(name, types, attrs))
    assert f"'{name}'" in str(err.value)


@pytest.mark.parametrize("name,types,attrs,message", [
    ("add", [TensorType((2, 3), "f32"), TensorType((4,), "f32")], {}, "do not broadcast"),
    ("add", [TensorType((2,), "f32"), TensorType((2,), "i64")], {}, "one dtype"),
    ("matmul", [TensorType((2, 3), "f32"), TensorType((4, 5), "f32")], {}, "contraction"),
    ("reshape", [TensorType((2, 3), "f32")], {"shape": (4, -1)}, "cannot reshape"),
    ("reshape", [TensorType((2, 3), "f32")], {"shape": (-1, -1)}, "more than one -1"),
    ("squeeze", [TensorType((2, 3), "f32")], {"axes": (0,)}, "not 1"),
    ("squeeze", [TensorType((SEQ, 1), "f32")], {}, "give axes"),
    ("sqrt", [TensorType((2,), "i64")], {}, "allowed: bf16, f16, f32"),
    ("split", [TensorType((6,), "f32")], {}, "exactly one"),
    ("split", [TensorType((6,), "f32")], {"split": (2, 2)}, "add up"),
    ("gather", [TensorType((6,), "f32"), TensorType((2,), "f32")], {}, "indices"),
])
def test_inference_rejects_bad_operands(name: str, types: list[TensorType], attrs: dict[str, Any], message: str
                                        ) -> None:
    opdef = lookup_op(name)
    with pytest.raises(VerifyError, match=re.escape(message)) as err:
        opdef.infer(InferContext(name, list(types), opdef.with_defaults(attrs)))
    assert f"'{name}'" in str(err.value)


# -- costs -----------------------------------------------------------------------------------------------------------
def test_costs_count_flops_and_bytes() -> None:
    a, w = TensorType((2, 8, 16), "f32"), TensorType((16, 32), "f32")
    out = TensorType((2, 8, 32), "f32")
    assert lookup_op("matmul").cost([a, w], [out], {}) == Cost(2 * 2 * 8 * 32 * 16, (256 + 512 + 512) * 4)
    g = lookup_op("gemm").cost([TensorType((16, 8), "f32"), w], [TensorType((8, 32), "f32")], {"transA": True})
    assert g.flops == 2 * 8 * 32 * 16
    assert lookup_op("add").cost([a, a], [a], {}) == Cost(256, 3 * 256 * 4)
    assert lookup_op("exp").cost([a], [a], {}).flops == 256 * lookup_op("exp").flops_per_element > 256
    assert lookup_op("reduce_sum").cost([a], [TensorType((2, 8, 1), "f32")], {}).flops == 256
    assert lookup_op("reshape").cost([a], [TensorType((16, 16), "f32")], {}) == Cost(0, 2 * 256 * 4)
    sym = TensorType((BATCH, 16), "f32")
    assert lookup_op("matmul").cost([sym, w], [TensorType((BATCH, 32), "f32")], {}) == Cost(0, 0)


# -- the registry ----------------------------------------------------------------------------------------------------
EXPECTED = {"add", "sub", "mul", "div", "pow", "sqrt", "erf", "tanh", "neg", "exp", "log", "abs", "reciprocal", "relu",
            "sigmoid", "where", "equal", "less", "less_or_equal", "greater", "greater_or_equal", "not", "and", "or",
            "is_nan", "is_inf", "cast", "matmul", "gemm", "softmax", "layer_normalization", "gelu", "reduce_mean",
            "reduce_sum", "reduce_max", "max", "min", "reshape", "transpose", "split", "slice", "concat", "squeeze",
            "unsqueeze", "expand", "gather", "gather_nd", "shape", "size", "constant_of_shape", "range", "trilu",
            "cumsum", "identity", "flatten", "clip", "scatter_nd"}


def test_every_listed_graph_op_is_registered_once() -> None:
    assert EXPECTED <= set(GRAPH_OPS)
    classes = [lookup_op(name) for name in GRAPH_OPS]
    assert len(set(classes)) == len(classes) and all(c.name == n for c, n in zip(classes, GRAPH_OPS, strict=True))


@pytest.mark.parametrize("name", GRAPH_OPS)
def test_declaration_has_doc_example_and_attribute_specs(name: str) -> None:
    opdef = lookup_op(name)
    lines = inspect.cleandoc(opdef.__doc__ or "").splitlines()
    assert opdef.name == name and len(lines) == 3 and lines[1] == "", "one line of meaning, a blank, the example"
    example = opdef.example()
    assert lines[2].strip() == example and f"= {name}(" in example
    for key, spec in opdef.attributes.items():
        assert isinstance(spec, Attr) and spec.doc, f"{name}.{key} needs a doc"
        if not spec.required and spec.default is not None:  # None: the operand form is used instead
            assert check_attr_value(key, spec, spec.default) is None
    attrs = re.search(r"\{(.*)\} :", example)
    if attrs:  # printed form: attribute keys in sorted order
        keys = re.findall(r"(\w+) = ", attrs.group(1))
        assert keys == sorted(keys) and set(keys) <= set(opdef.attributes)


def _function_of_example(example: str) -> str:
    """Wrap an example op line in a module whose arguments are the operands (types from the op's signature)."""
    head, signature = example.rsplit(" : (", 1)
    m = re.match(r"(?P<results>[^=]+) = \w+\((?P<operands>[^)]*)\)", head)
    assert m, example
    operands = [o.strip() for o in m["operands"].split(",") if o.strip()]
    ins, outs = (re.findall(r"tensor<[^<>]*>", part) for part in signature.split(") -> ", 1))
    results = [r.strip() for r in m["results"].split(",")]
    args = ", ".join(f"{o}: {t}" for o, t in dict(zip(operands, ins, strict=True)).items())
    return (f"module @m {{\n  func @main({args}) -> ({', '.join(outs)}) {{\n    {example}\n"
            f"    return {', '.join(results)} : {', '.join(outs)}\n  }}\n}}\n")


@pytest.mark.parametrize("name", GRAPH_OPS)
def test_doc_example_parses_and_verifies(name: str) -> None:
    verify_module(parse_module(_function_of_example(lookup_op(name).example()), f"{name}.example"))

"""The text form: exact round trip, located parse errors, and the verifier's diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from cgpt.ir.builder import Builder
from cgpt.ir.core import Function, Loc, Module
from cgpt.ir.diagnostics import ParseError, VerifyError
from cgpt.ir.parser import parse_module
from cgpt.ir.printer import print_module
from cgpt.ir.types import Sym, TensorType, parse_type_body
from cgpt.ir.verifier import verify_module
from cgpt.ir.weights import WeightStore
from tests.ir_samples import SMALL


def test_small_module_round_trips_exactly() -> None:
    module = parse_module(SMALL, "small.cgir")
    verify_module(module)
    assert print_module(module) == SMALL


def test_types_with_symbolic_unknown_and_quoted_dims() -> None:
    t = parse_type_body('?batchx?"max_len"x?x768xf16')
    assert t.shape == ("batch", "max_len", None, 768) and t.dtype == "f16"
    assert str(t) == 'tensor<?batchx?"max_len"x?x768xf16>'
    assert str(TensorType((), "bool")) == "tensor<bool>"


def test_symbolic_dim_arithmetic_simplifies_identities() -> None:
    seq = Sym("seq")
    assert seq + 0 == "seq" and seq * 1 == "seq" and seq * 0 == 0
    assert seq + 1 == "(seq+1)" and isinstance(seq * Sym("batch"), Sym)


def test_attribute_kinds_round_trip() -> None:
    text = SMALL.replace(
        "%dead = neg(%4)",
        '%dead = neg(%4) {a = "quote\\" and \\\\ slash", b = [1, [2.5, -inf], nan], c = true, d = [?batch, 4], '
        "e = dense<[[1, 2], [3, 4]]> : tensor<2x2xi64>, f = #mesh.unknown<x = 1, y = [2]>, g = none}",
    )
    module = parse_module(text)
    attrs = next(op for op in module.ops() if op.name == "neg").attributes
    assert attrs["a"] == 'quote" and \\ slash'
    assert attrs["d"] == (Sym("batch"), 4) and isinstance(attrs["d"][0], Sym)
    assert attrs["e"].dtype == np.int64 and attrs["e"].tolist() == [[1, 2], [3, 4]]
    assert print_module(module) == text


def test_dense_floats_print_shortest_text_that_reads_back_exactly() -> None:
    for dtype, name in ((np.float32, "f32"), (np.float16, "f16")):
        values = np.array([1e-5, 0.1, 1 / 3, -65504, 6e-8], dtype=dtype)
        fn = Function("main", [])
        v = Builder(fn).constant(values)
        fn.set_outputs([v], ["out"])
        text = print_module(Module("m", functions=[fn]))
        back = parse_module(text).main.outputs[0].owner.attributes["value"]
        assert back.dtype == values.dtype and np.array_equal(back, values), name
        assert print_module(parse_module(text)) == text


def test_output_names_survive_when_they_differ_from_value_names() -> None:
    ret = "return %4 : tensor<?batchx?seqx8xf32>"
    text = SMALL.replace(ret, ret + ' {names = ["logits"]}')
    module = parse_module(text)
    assert module.main.output_names == ["logits"]
    assert print_module(module) == text


@pytest.mark.parametrize(
    ("mutation", "message", "line"),
    [
        (("%0 = add(%x, %y)", "%0 = add(%x, %q)"), "use of undefined value %q", 5),
        (("%0 = add(%x, %y)", "%0 = frobnicate(%x, %y)"), "unknown op 'frobnicate'", 5),
        (("%2 = add", "%1 = add"), "value %1 is defined twice", 7),
        (("(tensor<?batchx?seqx8xf32>, tensor<8xf32>) -> tensor<?batchx?seqx8xf32> loc(\"/h.0/Add\")",
          "(tensor<?batchx?seqx8xf16>, tensor<8xf32>) -> tensor<?batchx?seqx8xf32> loc(\"/h.0/Add\")"),
         "type mismatch for %x", 5),
        (("tensor<8xf32>) -> (", "tensor<8xf99>) -> ("), "element type 'f99'", 2),
        (("return %4 :", "return %4 %4 :"), "unexpected '%4'", 11),
    ],
)
def test_parse_errors_name_file_line_and_column(mutation: tuple[str, str], message: str, line: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_module(SMALL.replace(*mutation, 1), "small.cgir")
    err = info.value
    assert message in err.message
    assert err.where is not None and err.where.startswith(f"small.cgir:{line}:")
    assert err.detail is not None and err.detail.splitlines()[-1].strip() == "^"


def test_verifier_reports_inferred_type_mismatch_with_the_op() -> None:
    bad = SMALL.replace(
        "%4 = mul(%3, %c) : (tensor<?batchx?seqx8xf32>, tensor<8xf32>) -> tensor<?batchx?seqx8xf32>",
        "%4 = mul(%3, %c) : (tensor<?batchx?seqx8xf32>, tensor<8xf32>) -> tensor<?batchx?seqx8xf32>",
    ).replace("%dead = neg(%4) : (tensor<?batchx?seqx8xf32>) -> tensor<?batchx?seqx8xf32>",
              "%dead = neg(%4) : (tensor<?batchx?seqx8xf32>) -> tensor<?batchx?seqx9xf32>")
    bad = bad.replace("return %4 : tensor<?batchx?seqx8xf32>", "return %4 : tensor<?batchx?seqx8xf32>")
    module = parse_module(bad)
    with pytest.raises(VerifyError) as info:
        verify_module(module)
    assert "result type mismatch" in info.value.message
    assert "neg(%4)" in (info.value.detail or "")


def test_verifier_checks_attributes_against_the_declaration() -> None:
    module = parse_module(SMALL.replace("%dead = neg(%4)", "%dead = neg(%4) {bogus = 1}"))
    with pytest.raises(VerifyError, match="'neg' has no attribute 'bogus'"):
        verify_module(module)


def test_verifier_checks_weights_against_the_store() -> None:
    store = WeightStore()
    store.add("layer.weight", np.ones(7, np.float32))
    module = parse_module(SMALL, weights=store)
    with pytest.raises(VerifyError, match="weight 'layer.weight' is tensor<7xf32> in the weight store"):
        verify_module(module)


def test_verifier_checks_dominance() -> None:
    module = parse_module(SMALL)
    fn = module.main
    ops = list(fn.ops)
    add0 = ops[2]
    fn.unlink(add0)
    fn.append(add0)  # now defined after its users
    with pytest.raises(VerifyError, match="used before it is defined"):
        verify_module(module)


def test_locations_fuse_in_first_seen_order() -> None:
    fused = Loc.fuse([Loc(("a", "b")), Loc(("b", "c")), Loc(())])
    assert fused.names == ("a", "b", "c")


def test_weights_save_and_open_memory_mapped(tmp_path) -> None:
    store = WeightStore()
    store.add("b", np.arange(6, dtype=np.float16).reshape(2, 3))
    store.add("a", np.arange(4, dtype=np.int64))
    path = tmp_path / "w.safetensors"
    store.save(path)
    back = WeightStore.open(path)
    assert back.names() == ["a", "b"]
    assert isinstance(back["b"], np.memmap) and np.array_equal(back["b"], store["b"])
    from safetensors.numpy import load_file

    assert np.array_equal(load_file(str(path))["a"], store["a"])  # the real library reads our files

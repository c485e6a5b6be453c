"""Property tests of the text form: random modules round-trip; random mutations never crash the parser."""

from __future__ import annotations

import os
import re

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cgpt.ir.builder import Builder
from cgpt.ir.core import Function, Loc, Module
from cgpt.ir.diagnostics import ParseError
from cgpt.ir.parser import parse_module
from cgpt.ir.printer import print_module
from cgpt.ir.types import Sym, TensorType
from tests.ir_samples import SMALL

EXAMPLES = int(os.environ.get("CGPT_FUZZ_EXAMPLES", "150"))

dims = st.one_of(st.integers(1, 9), st.sampled_from([Sym("batch"), Sym("seq"), Sym("max_len"), Sym("n0")]))
shapes = st.lists(dims, min_size=0, max_size=3).map(tuple)
float_dtypes = st.sampled_from(["f32", "f16", "bf16"])
names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.integers(-(2**62), 2**62),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    names,
    st.sampled_from([Sym("seq"), Sym("batch")]),
)
attr_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=8)
attr_dicts = st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), attr_values, max_size=4)
locs = st.lists(names, max_size=3).map(lambda ns: Loc(tuple(ns)))


@st.composite
def modules(draw: st.DrawFn) -> Module:
    """A well-typed module: elementwise chains over random symbolic shapes, constants, weights, attributes."""
    dtype = draw(float_dtypes)
    shape = draw(shapes)
    n_args = draw(st.integers(1, 3))
    fn = Function("main", [TensorType(shape, dtype)] * n_args, [draw(st.sampled_from(["x", "input_ids", None]))])
    b = Builder(fn)
    pool = list(fn.args)
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["unary", "binary", "const", "weight", "identity"]))
        if kind == "unary":
            v = b.create(draw(st.sampled_from(["neg", "exp", "tanh", "sqrt"])), [draw(st.sampled_from(pool))],
                         loc=draw(locs)).result
        elif kind == "binary":
            v = b.create(draw(st.sampled_from(["add", "sub", "mul", "div"])),
                         [draw(st.sampled_from(pool)), draw(st.sampled_from(pool))], loc=draw(locs)).result
        elif kind == "const":
            n = draw(st.integers(0, 4))
            vals = draw(st.lists(st.floats(width=16, allow_nan=False), min_size=n, max_size=n))
            b.constant(np.array(vals, dtype=np.float32))
            continue
        elif kind == "weight":
            b.weight(draw(names) or "w", TensorType(shape, dtype), name_hint=draw(st.sampled_from([None, "w", "x"])))
            continue
        else:
            v = b.create("identity", [draw(st.sampled_from(pool))], loc=draw(locs)).result
            v.owner.attributes.update(draw(attr_dicts))
        pool.append(v)
    outs = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
    fn.set_outputs(outs, [f"out{i}" for i in range(len(outs))])
    return Module("prop", {"source": draw(names)}, [fn])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modules())
def test_print_parse_print_is_identical(module: Module) -> None:
    text = print_module(module)
    again = print_module(parse_module(text, "prop.cgir"))
    assert again == text


def _mutate(text: str, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["delete", "insert", "replace", "swap_lines", "truncate", "duplicate"]))
    if not text:
        return text
    i = data.draw(st.integers(0, len(text) - 1))
    if kind == "delete":
        j = data.draw(st.integers(i, min(len(text), i + 8)))
        return text[:i] + text[j:]
    if kind == "insert":
        pieces = list('%@{}()[]<>,:="x?-0.9e#\\\n') + ["tensor<", "loc(", "dense<"]
        return text[:i] + data.draw(st.sampled_from(pieces)) + text[i:]
    if kind == "replace":
        return text[:i] + data.draw(st.characters(codec="utf-8", exclude_categories=("Cs",))) + text[i + 1 :]
    if kind == "truncate":
        return text[:i]
    lines = text.splitlines(keepends=True)
    a, b = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines) - 1))
    if kind == "duplicate":
        lines.insert(b, lines[a])
    else:
        lines[a], lines[b] = lines[b], lines[a]
    return "".join(lines)


@settings(max_examples=EXAMPLES * 2, deadline=2000)
@given(st.data())
def test_mutated_text_parses_or_raises_a_located_parse_error(data: st.DataObject) -> None:
    text = SMALL
    for _ in range(data.draw(st.integers(1, 3))):
        text = _mutate(text, data)
    try:
        parse_module(text, "m.cgir")
    except ParseError as err:
        assert err.where is not None and re.fullmatch(r"m\.cgir:\d+:\d+", err.where), err.where

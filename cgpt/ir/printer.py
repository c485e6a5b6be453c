"""The text form of the IR, close to MLIR's generic form (grammar in cgpt/ir/grammar.lark, docs/ir.md).

    module @tiny attributes {source = "tiny.onnx"} {
      func @main(%input_ids: tensor<?batchx?seqxi64>) -> (tensor<?batchx?seqx512xf32>) {
        %wte = weight "transformer.wte.weight" : tensor<512x64xf32>
        %0 = gather(%wte, %input_ids) {axis = 0} : (tensor<512x64xf32>, tensor<?batchx?seqxi64>) -> ...
        return %0 : tensor<?batchx?seqx64xf32>
      }
    }

Printing is deterministic: attributes sorted by name, values named by their hint when it is a unique identifier,
otherwise numbered in order. print(parse(text)) == text for every printed module.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from cgpt.ir.attributes import dialect_attr_fields, is_dialect_attr
from cgpt.ir.core import Function, Loc, Module, Operation, Value
from cgpt.ir.types import Sym, TensorType, dim_text, type_of_array

_ID = re.compile(r"[A-Za-z_$.\-][A-Za-z0-9_$.\-]*\Z|\d+\Z")
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9_$.\-]")


def _sanitize(hint: str) -> str:
    s = _BAD_ID_CHARS.sub("_", hint)
    return s if _ID.match(s) else "_" + s


class Namer:
    """Assigns each value of a function a unique printed name (hint first, then numbers)."""

    def __init__(self, fn: Function) -> None:
        self.names: dict[Value, str] = {}
        taken: set[str] = set()
        values: list[Value] = list(fn.args)
        for op in fn.ops:
            values.extend(op.results)
        # Returned values are named after the graph's outputs when they have no hint of their own.
        preferred = dict(zip(fn.outputs, fn.output_names, strict=False))
        unnamed: list[Value] = []
        for v in values:
            hint = v.name_hint or preferred.get(v)
            name = _sanitize(hint) if hint else None
            if name is None or name in taken:
                unnamed.append(v)
                continue
            self.names[v] = name
            taken.add(name)
        counter = 0
        for v in unnamed:
            while str(counter) in taken:
                counter += 1
            self.names[v] = str(counter)
            taken.add(str(counter))
            counter += 1

    def __getitem__(self, v: Value) -> str:
        return "%" + self.names.get(v, "<<unknown>>")


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(r'[\\"\x00-\x1f\x7f]')


def format_string(s: str) -> str:
    """A double-quoted string: backslash, quote, newline and tab escaped; other control characters as \\xNN."""
    out = _NEEDS_ESCAPE.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), s)
    return f'"{out}"'


def format_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))


def format_attr_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Sym):
        return dim_text(v)
    if isinstance(v, str):
        return format_string(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format_float(float(v))
    if isinstance(v, np.ndarray):
        return f"dense<{_format_dense(v)}> : {type_of_array(v)}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_attr_value(x) for x in v) + "]"
    if isinstance(v, TensorType):
        return str(v)
    if is_dialect_attr(v):
        body = ", ".join(f"{k} = {format_attr_value(x)}" for k, x in dialect_attr_fields(v))
        return f"#{v.attr_name}<{body}>"
    if v is None:
        return "none"
    raise TypeError(f"cannot print attribute value {v!r}")


def _format_dense(a: np.ndarray) -> str:
    if a.dtype == np.bool_:
        fmt = lambda x: "true" if x else "false"  # noqa: E731
    elif a.dtype.kind in "iu":
        fmt = lambda x: str(int(x))  # noqa: E731
    else:
        fmt = _format_element  # shortest text that reads back to the same value in this dtype
    if a.ndim == 0:
        return fmt(a[()])

    def rec(x: np.ndarray) -> str:
        if x.ndim == 1:
            return "[" + ", ".join(fmt(e) for e in x) + "]"
        return "[" + ", ".join(rec(s) for s in x) + "]"

    return rec(a)


def _format_element(x: Any) -> str:
    f = float(x)
    if math.isnan(f) or math.isinf(f):
        return format_float(f)
    text = str(x)
    return text if any(c in text for c in ".en") else text + ".0"


def format_attr_dict(attrs: dict[str, Any]) -> str:
    if not attrs:
        return ""
    return "{" + ", ".join(f"{k} = {format_attr_value(attrs[k])}" for k in sorted(attrs)) + "}"


def format_loc(loc: Loc) -> str:
    if not loc.names:
        return ""
    if len(loc.names) == 1:
        return f"loc({format_string(loc.names[0])})"
    return "loc(fused[" + ", ".join(format_string(n) for n in loc.names) + "])"


def format_op(op: Operation, namer: Namer) -> str:
    """One op as a line of text (without indentation)."""
    results = ", ".join(namer[r] for r in op.results)
    if op.name == "weight":
        return f"{results} = weight {format_string(op.attributes['name'])} : {op.result.type}"
    if op.name == "constant" and set(op.attributes) == {"value"}:
        text = f"{results} = constant {format_attr_value(op.attributes['value'])}"
        loc = format_loc(op.loc)
        return f"{text} {loc}" if loc else text
    operands = ", ".join(namer[v] for v in op.operands)
    in_types = ", ".join(v.type.text for v in op.operands)
    if len(op.results) == 1:
        out_types = op.results[0].type.text
    else:
        out_types = "(" + ", ".join(r.type.text for r in op.results) + ")"
    parts = [f"{results} = {op.name}({operands})"]
    if op.attributes:
        parts.append(format_attr_dict(op.attributes))
    parts.append(f": ({in_types}) -> {out_types}")
    loc = format_loc(op.loc)
    if loc:
        parts.append(loc)
    return " ".join(parts)


def print_function(fn: Function, indent: str = "  ") -> str:
    namer = Namer(fn)
    args = ", ".join(f"{namer[a]}: {a.type}" for a in fn.args)
    results = ", ".join(str(t) for t in fn.result_types)
    lines = [f"{indent}func @{fn.name}({args}) -> ({results}) {{"]
    for op in fn.ops:
        lines.append(f"{indent}  {format_op(op, namer)}")
    ret = "return"
    if fn.outputs:
        ret += " " + ", ".join(namer[v] for v in fn.outputs) + " : " + ", ".join(str(v.type) for v in fn.outputs)
        if [namer.names[v] for v in fn.outputs] != list(fn.output_names):
            ret += " " + format_attr_dict({"names": tuple(fn.output_names)})
    lines.append(f"{indent}  {ret}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def print_module(module: Module) -> str:
    """The whole module as text, ending with a newline."""
    head = f"module @{_symbol(module.name)}"
    if module.attributes:
        head += " attributes " + format_attr_dict(module.attributes)
    body = [print_function(fn) for fn in module.functions]
    return "\n".join([head + " {", *body, "}"]) + "\n"


def _symbol(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$.\-]*", name) else format_string(name)

"""Parse the IR text form (cgpt/ir/grammar.lark, LALR) straight into IR objects, with located diagnostics.

    module = parse_module(text, filename="m.cgir", weights=WeightStore.open("weights.safetensors"))

Errors are `ParseError`s reading `FILE:LINE:COL: error: MESSAGE`, followed by the source line and a caret.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from importlib import resources
from typing import Any

import lark
import numpy as np

from cgpt.ir.attributes import OpaqueAttr, lookup_dialect_attr
from cgpt.ir.core import UNKNOWN_LOC, Function, Loc, Module, Operation, Value
from cgpt.ir.diagnostics import ParseError
from cgpt.ir.registry import all_ops, lookup_op
from cgpt.ir.types import NUMPY_DTYPES, Sym, TensorType, parse_type_body
from cgpt.ir.weights import WeightStore


class _Located(Exception):
    """A semantic error at a token, turned into a ParseError with the source line by `parse_module`."""

    def __init__(self, message: str, token: lark.Token | None) -> None:
        super().__init__(message)
        self.message = message
        self.token = token


@lru_cache(maxsize=4096)
def _type_of_text(text: str) -> TensorType:
    return parse_type_body(text[len("tensor<") : -1])


_VALUE_RE = re.compile(r"%[A-Za-z0-9_$.\-]+")
_TYPE_RE = re.compile(r"tensor<[^<>]*>")


@lru_cache(maxsize=4096)
def _functype_of_text(text: str) -> tuple[tuple[TensorType, ...], tuple[TensorType, ...]]:
    left, _, right = text.partition("->")
    return (tuple(_type_of_text(t) for t in _TYPE_RE.findall(left)),
            tuple(_type_of_text(t) for t in _TYPE_RE.findall(right)))


def _functype(tok: lark.Token) -> tuple[tuple[TensorType, ...], tuple[TensorType, ...]]:
    try:
        return _functype_of_text(str(tok))
    except ValueError as err:
        raise _Located(str(err), tok) from None


def _sub_token(tok: lark.Token, offset: int) -> lark.Token:
    """A token pointing `offset` characters into `tok` (for errors inside a multi-value token)."""
    before = tok[:offset]
    line = (tok.line or 1) + before.count("\n")
    col = offset - before.rfind("\n") if "\n" in before else (tok.column or 1) + offset
    return lark.Token(tok.type, tok[offset:], line=line, column=col)


def _type(tok: str) -> TensorType:
    try:
        return _type_of_text(str(tok))
    except ValueError as err:
        raise _Located(str(err), tok if isinstance(tok, lark.Token) else None) from None


_UNESCAPES = {"n": "\n", "t": "\t"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)


def _unquote(tok: str) -> str:
    body = tok[1:-1]
    if "\\" not in body:
        return body
    return _ESCAPE.sub(lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) == 3 else
                       _UNESCAPES.get(m.group(1), m.group(1)), body)


class _Builder(lark.Transformer):
    """Callbacks run by the LALR parser as it reduces each rule (no parse tree is built)."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.scope: dict[str, Value] = {}

    # -- values and ops ----------------------------------------------------------------------------------------------
    def _define(self, tok: lark.Token, v: Value) -> None:
        name = tok[1:]
        if name in self.scope:
            raise _Located(f"value %{name} is defined twice", tok)
        v.name_hint = name
        self.scope[name] = v

    def _use(self, tok: lark.Token) -> Value:
        v = self.scope.get(tok[1:])
        if v is None:
            raise _Located(f"use of undefined value {tok}", tok)
        return v

    def arg(self, c: list[Any]) -> Value:
        v = Value(_type(c[1]))
        self._define(c[0], v)
        return v

    def generic_op(self, c: list[Any]) -> Operation:
        i = 0
        result_toks = []
        while c[i].type == "VALUE_ID":
            result_toks.append(c[i])
            i += 1
        name_tok, operands_tok = c[i], c[i + 1]
        i += 2
        attrs: dict[str, Any] = {}
        if isinstance(c[i], dict):
            attrs = c[i]
            i += 1
        functype_tok = c[i]
        loc = c[i + 1] if i + 1 < len(c) else UNKNOWN_LOC
        if lookup_op(str(name_tok)) is None:
            raise _Located(f"unknown op '{name_tok}'", name_tok)
        in_types, out_types = _functype(functype_tok)
        operands = []
        for m in _VALUE_RE.finditer(operands_tok):
            v = self.scope.get(m.group()[1:])
            if v is None:
                raise _Located(f"use of undefined value {m.group()}", _sub_token(operands_tok, m.start()))
            operands.append(v)
        if len(in_types) != len(operands):
            raise _Located(f"'{name_tok}' has {len(operands)} operands but {len(in_types)} operand types", name_tok)
        for k, (v, t) in enumerate(zip(operands, in_types, strict=True)):
            if v.type != t:
                name = _VALUE_RE.findall(operands_tok)[k]
                raise _Located(f"type mismatch for {name}: it is {v.type}, the op says {t}", functype_tok)
        if len(out_types) != len(result_toks):
            raise _Located(f"'{name_tok}' has {len(result_toks)} results but {len(out_types)} result types", name_tok)
        op = Operation(str(name_tok), operands, out_types, attrs, loc)
        for tok, r in zip(result_toks, op.results, strict=True):
            self._define(tok, r)
        return op

    def weight_op(self, c: list[Any]) -> Operation:
        op = Operation("weight", [], [_type(c[2])], {"name": _unquote(c[1])})
        self._define(c[0], op.result)
        return op

    def constant_op(self, c: list[Any]) -> Operation:
        op = Operation("constant", [], [_type_of_dense(c[1])], {"value": c[1]}, c[2] if len(c) > 2 else UNKNOWN_LOC)
        self._define(c[0], op.result)
        return op

    def ret(self, c: list[Any]) -> tuple[list[Value], list[str], dict[str, Any] | None]:
        attrs = c[-1] if c and isinstance(c[-1], dict) else None
        toks = [t for t in c if isinstance(t, lark.Token)]
        value_toks = [t for t in toks if t.type == "VALUE_ID"]
        type_toks = [t for t in toks if t.type == "TYPE"]
        values = [self._use(t) for t in value_toks]
        for tok, v, tt in zip(value_toks, values, type_toks, strict=False):
            if v.type != _type(tt):
                raise _Located(f"type mismatch for {tok}: it is {v.type}, return says {_type(tt)}", tok)
        if len(type_toks) != len(values):
            raise _Located("return has a different number of values and types", value_toks[0] if value_toks else None)
        names = [t[1:] for t in value_toks]
        if attrs and "names" in attrs:
            names = [str(n) for n in attrs["names"]]
        return values, names, attrs

    def func(self, c: list[Any]) -> Function:
        name = str(c[0])[1:].strip('"')
        args = [x for x in c if isinstance(x, Value)]
        sig_types = [_type(t) for t in c if isinstance(t, lark.Token) and t.type == "TYPE"]
        ops = [x for x in c if isinstance(x, Operation)]
        values, names, _ = c[-1]
        fn = Function(name, [])
        for i, v in enumerate(args):
            v.index = i
        fn.args = args
        for op in ops:
            fn.append(op)
        if [v.type for v in values] != sig_types:
            raise _Located(f"function @{fn.name} returns types that differ from its signature", c[0])
        fn.set_outputs(values, names)
        self.reset()
        return fn

    # -- attributes --------------------------------------------------------------------------------------------------
    def attr_dict(self, c: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in c:
            if key in out:
                raise _Located(f"attribute '{key}' is given twice", key)
            out[str(key)] = value
        return out

    def attr(self, c: list[Any]) -> tuple[lark.Token, Any]:
        return c[0], c[1]

    def int_(self, c: list[Any]) -> int:
        return int(c[0])

    def float_(self, c: list[Any]) -> float:
        return float(c[0])

    def string(self, c: list[Any]) -> str:
        return _unquote(c[0])

    def true(self, c: list[Any]) -> bool:
        return True

    def false(self, c: list[Any]) -> bool:
        return False

    def none(self, c: list[Any]) -> None:
        return None

    def symdim(self, c: list[Any]) -> Sym | None:
        text = str(c[0])[1:]
        if not text:
            return None
        return Sym(text[1:-1] if text.startswith('"') else text)

    def type_(self, c: list[Any]) -> TensorType:
        return _type(c[0])

    def list_(self, c: list[Any]) -> tuple[Any, ...]:
        return tuple(c)

    def dense(self, c: list[Any]) -> np.ndarray:
        t = _type(c[1])
        if not t.is_static:
            raise _Located(f"a dense constant needs a static type, got {t}", c[1])
        if (t.numel or 0) > INLINE_LIMIT:
            raise _Located(f"a dense constant of {t.numel} elements is too large to write inline", c[1])
        try:
            raw = np.array(c[0], dtype=np.float64 if t.dtype in ("f32", "f16", "bf16") else None)
            arr = raw.astype(NUMPY_DTYPES[t.dtype])
        except (ValueError, TypeError, OverflowError) as err:
            raise _Located(f"bad dense constant: {err}", c[1]) from None
        if arr.shape != tuple(t.shape):
            if arr.ndim == 0 and t.numel is not None:
                arr = np.full(tuple(t.shape), arr)  # a splat: dense<0.0> : tensor<2x3xf32>
            else:
                raise _Located(f"dense constant has shape {list(arr.shape)} but its type is {t}", c[1])
        return arr

    def dialect(self, c: list[Any]) -> Any:
        name = str(c[0])[1:]
        params = {str(k): v for k, v in c[1:]}
        cls = lookup_dialect_attr(name)
        if cls is None:
            return OpaqueAttr(name, tuple(params.items()))
        try:
            return cls(**params)
        except TypeError as err:
            raise _Located(f"bad #{name} attribute: {err}", c[0]) from None

    def loc(self, c: list[Any]) -> Loc:
        text = str(c[0])
        return Loc((_unquote(text[text.index('"') : text.rindex('"') + 1]),))

    def fused_loc(self, c: list[Any]) -> Loc:
        return Loc(tuple(_unquote(t) for t in c))

    def module_attrs(self, c: list[Any]) -> dict[str, Any]:
        return c[0] if c else {}

    def start(self, c: list[Any]) -> Module:
        module = Module(name=str(c[0])[1:].strip('"'), attributes=c[1])
        for fn in c[2:]:
            module.add_function(fn)
        return module


def _type_of_dense(a: np.ndarray) -> TensorType:
    from cgpt.ir.types import type_of_array

    return type_of_array(a)


_LOCK = threading.Lock()
INLINE_LIMIT = 1 << 20  # elements; larger tensors belong in the weight store


@lru_cache(maxsize=1)
def _parser() -> tuple[lark.Lark, _Builder]:
    all_ops()  # registers the built-in ops and their dialect attributes before any text is read
    grammar = resources.files("cgpt.ir").joinpath("grammar.lark").read_text()
    builder = _Builder()
    return lark.Lark(grammar, parser="lalr", transformer=builder, maybe_placeholders=False), builder


def _caret(text: str, line: int, col: int) -> str:
    lines = text.splitlines()
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"{src}\n{' ' * max(col - 1, 0)}^"


def parse_module(text: str, filename: str = "<input>", weights: WeightStore | None = None) -> Module:
    """Parse IR text into a Module (not yet verified: call `verify_module`)."""
    parser, builder = _parser()
    with _LOCK:
        builder.reset()
        try:
            module: Module = parser.parse(text)
        except lark.exceptions.UnexpectedInput as err:
            line, col = getattr(err, "line", 0), getattr(err, "column", 0)
            raise ParseError(_describe(err), where=f"{filename}:{line}:{col}", detail=_caret(text, line, col)) from None
        except (lark.exceptions.VisitError, _Located) as err:
            inner = err.orig_exc if isinstance(err, lark.exceptions.VisitError) else err
            if isinstance(inner, _Located):
                tok = inner.token
                line, col = (tok.line, tok.column) if tok is not None else (0, 0)
                detail = _caret(text, line, col) if tok is not None else None
                raise ParseError(inner.message, where=f"{filename}:{line}:{col}", detail=detail) from None
            raise
        finally:
            builder.reset()
    module.weights = weights
    return module


def _describe(err: lark.exceptions.UnexpectedInput) -> str:
    if isinstance(err, lark.exceptions.UnexpectedToken):
        tok = err.token
        got = "end of input" if tok.type == "$END" else f"'{tok}'"
        expected = sorted(_pretty(e) for e in err.expected)[:8]
        return f"unexpected {got}; expected one of: {', '.join(expected)}"
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        return f"unexpected character '{err.char}'"
    if isinstance(err, lark.exceptions.UnexpectedEOF):
        return "unexpected end of input"
    return str(err).splitlines()[0]


_TERMINAL_NAMES = {
    "VALUE_ID": "a value (%name)", "TYPE": "a type (tensor<...>)", "OPNAME": "an op name", "STRING": "a string",
    "ATTR_KEY": "an attribute name", "SYMBOL": "a symbol (@name)", "INT": "an integer", "FLOAT": "a float",
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "COLON": "':'", "EQUAL": "'='", "MORETHAN": "'>'", "LESSTHAN": "'<'", "__ANON_0": "'->'",
}


def _pretty(terminal: str) -> str:
    return _TERMINAL_NAMES.get(terminal, terminal.lower().strip("_"))

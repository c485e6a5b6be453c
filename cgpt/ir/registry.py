"""The op registry: every op is declared once, as a small class.

    @register_op
    class Add(OpDef):
        \"\"\"Elementwise sum with numpy broadcasting.

            %z = add(%x, %y) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
        \"\"\"

        name = "add"
        operands = ("x", "y")

        @classmethod
        def infer(cls, ctx): return [broadcast_type(ctx, 0, 1)]

        @classmethod
        def kernel(cls, inputs, attrs): return np.add(inputs[0], inputs[1])

An operand name ending in `?` is optional (trailing only), one ending in `*` is variadic. Results likewise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from cgpt.ir.core import Loc, Operation
from cgpt.ir.diagnostics import VerifyError
from cgpt.ir.types import Sym, TensorType

_REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    """An attribute declaration: its kind, default, allowed choices or minimum, and a one-line doc.

    Kinds: int, float, bool, str, ints, floats, dims (ints and symbolic dims), dense (a numpy array), any,
    or a dialect attribute class.
    """

    kind: Any
    default: Any = _REQUIRED
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    min: float | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Cost:
    """Work of one op instance: floating-point operations and bytes moved (inputs read + outputs written)."""

    flops: int = 0
    bytes: int = 0


@dataclass
class InferContext:
    """What type inference sees: operand types, attributes (defaults filled) and known small operand values."""

    op_name: str
    types: list[TensorType | None]
    attrs: dict[str, Any]
    values: list[np.ndarray | None] = field(default_factory=list)
    loc: Loc = Loc()

    def value(self, i: int) -> np.ndarray | None:
        """The content of operand i when it is known at compile time (constants, folded shape computations)."""
        return self.values[i] if i < len(self.values) else None

    def type(self, i: int) -> TensorType:
        t = self.types[i]
        if t is None:
            raise self.error(f"operand #{i} is missing")
        return t

    def has(self, i: int) -> bool:
        return i < len(self.types) and self.types[i] is not None

    def error(self, message: str) -> VerifyError:
        from cgpt.ir.printer import format_loc

        where = format_loc(self.loc) or None
        return VerifyError(f"'{self.op_name}': {message}", where=where)


class OpDef:
    """Base of every op declaration. Subclasses set the class fields and override the classmethods they need."""

    name: ClassVar[str] = ""
    level: ClassVar[str] = "graph"  # graph, fused, mesh or source
    operands: ClassVar[tuple[str, ...]] = ()
    results: ClassVar[tuple[str, ...]] = ("out",)
    attributes: ClassVar[dict[str, Attr]] = {}
    pure: ClassVar[bool] = True  # no side effects: CSE and DCE may touch it

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        raise NotImplementedError(f"op '{cls.name}' has no type inference")

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray | list[np.ndarray]:
        raise NotImplementedError(f"op '{cls.name}' has no reference kernel")

    @classmethod
    def fold(cls, ctx: InferContext) -> list[np.ndarray] | None:
        """Compute small results at compile time from known operand values (None: not foldable)."""
        if any(v is None for v, t in zip(ctx.values, ctx.types, strict=False) if t is not None):
            return None
        out = cls.kernel(list(ctx.values), ctx.attrs)
        return out if isinstance(out, list) else [out]

    @classmethod
    def verify(cls, op: Operation) -> None:
        """Checks beyond types and attribute kinds (override to add them)."""

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        moved = sum(t.nbytes or 0 for t in in_types) + sum(t.nbytes or 0 for t in out_types)
        return Cost(flops=0, bytes=moved)

    # -- derived helpers -------------------------------------------------------------------------------------------
    @classmethod
    def operand_arity(cls) -> tuple[int, int | None]:
        """(minimum, maximum) operand count; maximum None when variadic."""
        required = sum(1 for n in cls.operands if not n.endswith(("?", "*")))
        variadic = any(n.endswith("*") for n in cls.operands)
        return required, None if variadic else len(cls.operands)

    @classmethod
    def with_defaults(cls, attrs: dict[str, Any]) -> dict[str, Any]:
        full = {k: a.default for k, a in cls.attributes.items() if not a.required}
        full.update(attrs)
        return full

    @classmethod
    def example(cls) -> str:
        """The op in text form, taken from the docstring's indented example lines."""
        lines = [ln.strip() for ln in (cls.__doc__ or "").splitlines() if f"= {cls.name}(" in ln or
                 f"= {cls.name} " in ln]
        return "\n".join(lines)


_OPS: dict[str, type[OpDef]] = {}
_LOADED = False
_FUNCTION_CHECKS: list[Callable[[Any], None]] = []


def register_function_check(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """Add a whole-function check to the verifier (e.g. regions must not overlap); it raises VerifyError."""
    if check not in _FUNCTION_CHECKS:
        _FUNCTION_CHECKS.append(check)
    return check


def function_checks() -> list[Callable[[Any], None]]:
    _load_builtin_ops()
    return list(_FUNCTION_CHECKS)


def register_op(cls: type[OpDef]) -> type[OpDef]:
    """Class decorator: add an op declaration to the registry (its name must be new)."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no op name")
    if cls.name in _OPS and _OPS[cls.name] is not cls:
        raise TypeError(f"op '{cls.name}' is declared twice ({_OPS[cls.name].__name__} and {cls.__name__})")
    _OPS[cls.name] = cls
    return cls


def _load_builtin_ops() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        importlib.import_module("cgpt.ir.ops")


def lookup_op(name: str) -> type[OpDef] | None:
    _load_builtin_ops()
    return _OPS.get(name)


def all_ops() -> dict[str, type[OpDef]]:
    _load_builtin_ops()
    return dict(sorted(_OPS.items()))


def check_attr_value(name: str, spec: Attr, value: Any) -> str | None:
    """Why `value` is not a valid value for attribute `name`, or None when it is."""
    kind = spec.kind
    ok: bool
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "str":
        ok = isinstance(value, str) and not isinstance(value, Sym)
    elif kind == "ints":
        ok = isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    elif kind == "floats":
        ok = isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value)
    elif kind == "dims":
        ok = isinstance(value, (tuple, list)) and all(
            (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, Sym) for v in value
        )
    elif kind == "dense":
        ok = isinstance(value, np.ndarray)
    elif kind == "any":
        ok = True
    else:
        ok = isinstance(value, kind)
    kind_name = kind if isinstance(kind, str) else f"#{getattr(kind, 'attr_name', kind.__name__)}"
    if not ok:
        return f"attribute '{name}' must be of kind {kind_name}, got {value!r}"
    if spec.choices is not None and value not in spec.choices:
        return f"attribute '{name}' must be one of {', '.join(map(repr, spec.choices))}, got {value!r}"
    if spec.min is not None and isinstance(value, (int, float)) and value < spec.min:
        return f"attribute '{name}' must be >= {spec.min}, got {value!r}"
    return None

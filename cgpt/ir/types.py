"""Tensor types with static or symbolic dims.

    tensor<1x128x768xf32>          static
    tensor<?batchx?seqx768xf32>    symbolic dims (`?name`; a name with an `x` in it is quoted: `?"max_len"`)
    tensor<?x4xf32>                an unknown dim
    tensor<f32>                    a scalar
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import ml_dtypes
import numpy as np

# Numpy storage for each IR dtype; bf16 comes from ml_dtypes (shipped with onnx).
NUMPY_DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "i64": np.dtype(np.int64),
    "i32": np.dtype(np.int32),
    "bool": np.dtype(np.bool_),
}
DTYPES: tuple[str, ...] = tuple(NUMPY_DTYPES)
_FROM_NUMPY = {v: k for k, v in NUMPY_DTYPES.items()}
FLOAT_DTYPES = frozenset({"f32", "f16", "bf16"})
INT_DTYPES = frozenset({"i64", "i32"})

_SYM_EXPR = re.compile(r"[A-Za-z0-9_+\-*/() ]+")
_SYM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_SYM = re.compile(r"[A-Za-wyz_][A-Za-wyz0-9_]*\Z")


class Sym(str):
    """A symbolic dimension (`batch`, `seq`, or an expression such as `seq+1`).

    Arithmetic with ints builds simplified expressions so shape computations fold symbolically:
    `Sym("seq") + 0 == "seq"`, `Sym("seq") * 1 == "seq"`.
    """

    __slots__ = ()

    def _combine(self, op: str, other: object, swap: bool = False) -> Sym | int:
        if isinstance(other, (np.integer,)):
            other = int(other)
        if not isinstance(other, (int, str)) or isinstance(other, bool):
            return NotImplemented  # type: ignore[return-value]
        if isinstance(other, int):
            identity = {"+": 0, "-": 0, "*": 1, "/": 1}
            if op in identity and other == identity[op] and not (swap and op in "-/"):
                return self
            if op == "*" and other == 0:
                return 0
        left, right = (other, self) if swap else (self, other)
        return Sym(f"({left}{op}{right})")

    def __add__(self, other: object) -> Sym | int:  # type: ignore[override]
        return self._combine("+", other)

    def __radd__(self, other: object) -> Sym | int:
        return self._combine("+", other, swap=True)

    def __sub__(self, other: object) -> Sym | int:
        return self._combine("-", other)

    def __rsub__(self, other: object) -> Sym | int:
        return self._combine("-", other, swap=True)

    def __mul__(self, other: object) -> Sym | int:  # type: ignore[override]
        return self._combine("*", other)

    def __rmul__(self, other: object) -> Sym | int:  # type: ignore[override]
        return self._combine("*", other, swap=True)

    def evaluate(self, bindings: dict[str, int]) -> int:
        """The value of this dim (a name or an expression of names) under concrete `bindings`."""
        if self in bindings:
            return int(bindings[self])
        if not _SYM_EXPR.fullmatch(self):
            raise ValueError(f"cannot evaluate symbolic dim '{self}'")
        names = {n: int(bindings[n]) for n in _SYM_NAME.findall(self) if n in bindings}
        missing = set(_SYM_NAME.findall(self)) - set(names)
        if missing:
            raise ValueError(f"no value for symbolic dim(s) {', '.join(sorted(missing))}")
        return int(eval(self.replace("/", "//"), {"__builtins__": {}}, names))  # safe: regex-checked arithmetic

    def __floordiv__(self, other: object) -> Sym | int:
        return self._combine("/", other)

    def __truediv__(self, other: object) -> Sym | int:
        return self._combine("/", other)


Dim = int | str | None  # int: static; str: symbolic; None: unknown


def concrete_shape(shape: tuple[Dim, ...], bindings: dict[str, int]) -> tuple[int, ...]:
    """A shape with every symbolic dim replaced by its value under `bindings` (ValueError if one is unknown)."""
    out = []
    for d in shape:
        if d is None:
            raise ValueError("unknown dim")
        out.append(d if isinstance(d, int) else Sym(d).evaluate(bindings))
    return tuple(out)


def dim_text(d: Dim) -> str:
    """The text form of one dim inside `tensor<...>` or an attribute list."""
    if d is None:
        return "?"
    if isinstance(d, str):
        return f"?{d}" if _BARE_SYM.match(d) else '?"' + d.replace('"', "") + '"'
    return str(d)


@dataclass(frozen=True)
class TensorType:
    """A ranked tensor type: a shape of dims and one of the six dtypes."""

    shape: tuple[Dim, ...]
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in NUMPY_DTYPES:
            raise ValueError(f"unknown dtype '{self.dtype}'; allowed: {', '.join(DTYPES)}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def numel(self) -> int | None:
        """Number of elements, or None when a dim is not static."""
        n = 1
        for d in self.shape:
            if not isinstance(d, int):
                return None
            n *= d
        return n

    @property
    def itemsize(self) -> int:
        return NUMPY_DTYPES[self.dtype].itemsize

    @property
    def nbytes(self) -> int | None:
        n = self.numel
        return None if n is None else n * self.itemsize

    @property
    def np_dtype(self) -> np.dtype:
        return NUMPY_DTYPES[self.dtype]

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(self.shape, dtype)

    @cached_property
    def text(self) -> str:
        return "tensor<" + "".join(dim_text(d) + "x" for d in self.shape) + self.dtype + ">"

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def dtype_of_numpy(dt: np.dtype) -> str:
    """The IR dtype for a numpy dtype (raises ValueError for ones the IR does not have)."""
    try:
        return _FROM_NUMPY[np.dtype(dt)]
    except KeyError:
        raise ValueError(f"numpy dtype {dt} has no IR dtype; allowed: {', '.join(DTYPES)}") from None


def type_of_array(a: np.ndarray) -> TensorType:
    return TensorType(tuple(int(d) for d in a.shape), dtype_of_numpy(a.dtype))


_TYPE_BODY = re.compile(r'(\d+|\?[A-Za-wyz_][A-Za-wyz0-9_]*|\?"[^"]*"|\?)x')


def parse_type_body(body: str) -> TensorType:
    """Parse the inside of `tensor<...>`: dims separated by `x`, then the dtype. Raises ValueError."""
    dims: list[Dim] = []
    pos = 0
    while True:
        m = _TYPE_BODY.match(body, pos)
        if not m:
            break
        tok = m.group(1)
        if tok == "?":
            dims.append(None)
        elif tok.startswith('?"'):
            dims.append(Sym(tok[2:-1]))
        elif tok.startswith("?"):
            dims.append(Sym(tok[1:]))
        else:
            dims.append(int(tok))
        pos = m.end()
    dtype = body[pos:]
    if dtype not in NUMPY_DTYPES:
        raise ValueError(f"bad tensor type 'tensor<{body}>': element type '{dtype}' is not one of {', '.join(DTYPES)}")
    return TensorType(tuple(dims), dtype)

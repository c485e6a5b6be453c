"""Shape helpers shared by the graph ops: broadcasting of (symbolic) dims, axis normalisation, symbolic products,
the operand-or-attribute convention, and numpy helpers for small known values that may hold `Sym` dims.

A known value is a numpy array: int64 (or another plain dtype) when fully static, dtype object when it holds `Sym`
entries (`np.array([Sym("batch"), Sym("seq"), 768], dtype=object)`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ml_dtypes
import numpy as np

from cgpt.ir.core import Operation
from cgpt.ir.diagnostics import VerifyError
from cgpt.ir.registry import InferContext
from cgpt.ir.types import Dim, Sym, TensorType

BF16 = np.dtype(ml_dtypes.bfloat16)
# A slice end at or beyond this is "to the end" for a symbolic dim (exporters write INT32_MAX or INT64_MAX).
SLICE_TO_END = 2**31 - 1


# -- dims ------------------------------------------------------------------------------------------------------------
def as_dim(v: Any) -> Dim:
    """One entry of a known shape value or a dims attribute as a Dim (numpy ints become int)."""
    if v is None or isinstance(v, Sym):
        return v
    if isinstance(v, str):
        return Sym(v)
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(f"a dim cannot be a bool ({v!r})")
    return int(v)


def broadcast_dim(a: Dim, b: Dim) -> Dim:
    """Numpy broadcasting of two dims; symbolic ones stay symbolic when the result is certain, else None.

    `?seq` with 1 is `?seq`; `?seq` with `?seq` is `?seq`; `?seq` with 768 is 768 (seq is 1 or 768);
    `?a` with `?b` is unknown (either may be 1). Raises ValueError for two different static dims, neither 1.
    """
    if a == 1:
        return b
    if b == 1:
        return a
    if isinstance(a, int) and isinstance(b, int):
        if a != b:
            raise ValueError(f"dims {a} and {b} do not broadcast")
        return a
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    if a is not None and a == b:
        return a
    return None


def broadcast_shapes(ctx: InferContext, shapes: Iterable[Sequence[Dim]]) -> tuple[Dim, ...]:
    """Multidirectional (numpy) broadcasting of shapes, reporting a static mismatch as an error of the op."""
    shapes = [tuple(s) for s in shapes]
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = [1] * rank
    for s in shapes:
        padded = (1,) * (rank - len(s)) + s
        for i, d in enumerate(padded):
            try:
                out[i] = broadcast_dim(out[i], d)
            except ValueError:
                text = ", ".join(TensorType(x, "f32").text[7:-5] or "scalar" for x in shapes)
                raise ctx.error(f"operand shapes do not broadcast ({text})") from None
    return tuple(out)


def merge_equal_dims(a: Dim, b: Dim) -> Dim:
    """Two dims that the op requires to be equal (concat's other axes, matmul's K): the more informative one."""
    if isinstance(a, int) and isinstance(b, int) and a != b:
        raise ValueError(f"dims {a} and {b} differ")
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    return a if a is not None else b


def dims_product(dims: Iterable[Dim]) -> Dim:
    """The product of dims: an int, a `Sym` product (`(batch*seq)`, constant factor last), or None if one is unknown."""
    coefficient = 1
    symbolic: Dim = 1
    for d in dims:
        if d is None:
            return None
        if isinstance(d, int):
            coefficient *= d
        else:
            symbolic = d if symbolic == 1 else symbolic * d
    if coefficient == 0:
        return 0
    return symbolic * coefficient if isinstance(symbolic, Sym) else coefficient


_ATOM = re.compile(r"[A-Za-z0-9_]+")


def _split_expression(text: str) -> tuple[str, str, str] | None:
    """Split a `Sym` expression `(left op right)` at its top-level operator; None for an atom."""
    if not (text.startswith("(") and text.endswith(")")):
        return None
    inner = text[1:-1]
    if inner.startswith("("):
        depth = 0
        for i, ch in enumerate(inner):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                end = i + 1
                break
        else:
            return None
    else:
        m = _ATOM.match(inner)
        if m is None:
            return None
        end = m.end()
    if end >= len(inner) or inner[end] not in "+-*/":
        return None
    return inner[:end], inner[end], inner[end + 1:]


def _factors(d: Dim) -> tuple[int, list[str]]:
    """A dim as (integer coefficient, symbolic factors) by splitting top-level products."""
    if isinstance(d, int):
        return d, []
    text = str(d)
    if text.isdigit():
        return int(text), []
    parts = _split_expression(text)
    if parts is None or parts[1] != "*":
        return 1, [text]
    lc, la = _factors(Sym(parts[0]))
    rc, ra = _factors(Sym(parts[2]))
    return lc * rc, la + ra


def dims_quotient(numerator: Iterable[Dim], denominator: Iterable[Dim]) -> Dim:
    """prod(numerator) / prod(denominator) when it is certainly a whole dim (cancelling symbolic factors), else None.

    [?batch, ?seq, 768] / [768] is `(batch*seq)`; [?batch, ?seq, 768] / [?batch, ?seq, 12] is 64.
    """
    num, den = list(numerator), list(denominator)
    if any(d is None for d in num + den):
        return None
    coefficient, atoms = 1, []
    for d in num:
        c, a = _factors(d)
        coefficient, atoms = coefficient * c, atoms + a
    divisor = 1
    for d in den:
        c, a = _factors(d)
        divisor *= c
        for atom in a:
            if atom not in atoms:
                return None
            atoms.remove(atom)
    if divisor == 0 or coefficient % divisor:
        return None
    return dims_product([Sym(a) for a in atoms] + [coefficient // divisor])


def is_nonnegative(d: Any) -> bool:
    """Whether a dim is certainly >= 0: ints that are, and symbolic dims built without `-` or `/`."""
    if isinstance(d, Sym):
        return "-" not in d and "/" not in d
    return isinstance(d, (int, np.integer)) and d >= 0


def normalize_axis(ctx: InferContext | str, axis: int, rank: int, attr: str = "axis") -> int:
    """`axis` in [-rank, rank) as a non-negative axis; an error naming the op and attribute otherwise."""
    if not -rank <= axis < rank:
        name = ctx if isinstance(ctx, str) else ctx.op_name
        message = f"attribute '{attr}' = {axis} is out of range for rank {rank} (allowed [{-rank}, {rank - 1}])"
        if isinstance(ctx, InferContext):
            raise ctx.error(message)
        raise VerifyError(f"'{name}': {message}")
    return axis + rank if axis < 0 else axis


def normalize_axes(ctx: InferContext | str, axes: Iterable[int], rank: int, attr: str = "axes") -> list[int]:
    """Normalised axes, rejecting duplicates."""
    out = [normalize_axis(ctx, int(a), rank, attr) for a in axes]
    if len(set(out)) != len(out):
        name = ctx if isinstance(ctx, str) else ctx.op_name
        message = f"attribute '{attr}' repeats an axis ({list(axes)})"
        if isinstance(ctx, InferContext):
            raise ctx.error(message)
        raise VerifyError(f"'{name}': {message}")
    return out


def check_dtype(ctx: InferContext, t: TensorType, allowed: Iterable[str], what: str = "operand") -> None:
    """An error naming the op when `t`'s dtype is not one the op accepts."""
    allowed = sorted(allowed)
    if t.dtype not in allowed:
        raise ctx.error(f"{what} of type {t} has dtype {t.dtype}; allowed: {', '.join(allowed)}")


def check_same_dtype(ctx: InferContext, types: Sequence[TensorType]) -> str:
    """The common dtype of operands that ONNX requires to match."""
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise ctx.error(f"operands must have one dtype, got {', '.join(str(t) for t in types)}")
    return types[0].dtype


# -- the operand-or-attribute convention ----------------------------------------------------------------------------
def form_of(ctx: InferContext, index: int, attr: str, required: bool = True) -> str | None:
    """Which form carries the data: "operand", "attr", or None (neither, allowed when not required)."""
    has_operand = ctx.has(index)
    has_attr = ctx.attrs.get(attr) is not None
    if has_operand and has_attr:
        raise ctx.error(f"'{attr}' is given both as operand #{index} and as an attribute; give one")
    if not (has_operand or has_attr):
        if required:
            raise ctx.error(f"'{attr}' is missing: give operand #{index} or attribute '{attr}'")
        return None
    return "operand" if has_operand else "attr"


def known_dims(ctx: InferContext, index: int, attr: str) -> tuple[Dim, ...] | None:
    """The dims given by attribute `attr` or by operand #index's known value; None when not known (or not given)."""
    form = form_of(ctx, index, attr, required=False)
    if form == "attr":
        return tuple(as_dim(v) for v in ctx.attrs[attr])
    if form == "operand":
        value = ctx.value(index)
        if value is not None:
            return tuple(as_dim(v) for v in np.asarray(value).reshape(-1))
    return None


def known_ints(ctx: InferContext, index: int, attr: str) -> tuple[int, ...] | None:
    """Like `known_dims` for integer data (axes, steps): a symbolic entry is an error."""
    dims = known_dims(ctx, index, attr)
    if dims is None:
        return None
    if not all(isinstance(d, int) for d in dims):
        raise ctx.error(f"'{attr}' must be integers, got {list(dims)}")
    return tuple(int(d) for d in dims)  # type: ignore[arg-type]


def operand_length(ctx: InferContext, index: int, what: str) -> int:
    """The static length of a 1-D operand (a shape, axes) whose value is not known."""
    t = ctx.type(index)
    if t.rank != 1 or not isinstance(t.shape[0], int):
        raise ctx.error(f"operand #{index} ({what}) must be a 1-D tensor of static length, got {t}")
    return t.shape[0]


def check_one_form(op: Operation, index: int, attr: str, required: bool = True) -> None:
    """Verify that `attr` is given either as operand #index or as an attribute, not both (and not neither)."""
    has_operand = len(op.operands) > index
    has_attr = op.attributes.get(attr) is not None
    if has_operand and has_attr:
        raise VerifyError(f"'{op.name}': '{attr}' is given both as operand #{index} and as attribute '{attr}'")
    if required and not (has_operand or has_attr):
        raise VerifyError(f"'{op.name}': '{attr}' is missing: give operand #{index} or attribute '{attr}'")


def runtime_ints(inputs: Sequence[np.ndarray | None], index: int, attrs: dict[str, Any], attr: str) -> list[int] | None:
    """Integer data for a kernel from attribute `attr` or operand #index (None when neither is given)."""
    given = attrs.get(attr)
    if given is None:
        if index >= len(inputs) or inputs[index] is None:
            return None
        given = np.asarray(inputs[index]).reshape(-1).tolist()
    out = []
    for v in given:
        if isinstance(v, str):
            raise ValueError(f"'{attr}' holds the symbolic dim ?{v}: bind symbols to sizes before running")
        out.append(int(v))
    return out


# -- known values with symbols ----------------------------------------------------------------------------------------
def dims_array(dims: Sequence[Any]) -> np.ndarray:
    """A 1-D known shape value: int64 when static, an object array when it holds symbolic dims."""
    if all(isinstance(d, (int, np.integer)) for d in dims):
        return np.array([int(d) for d in dims], dtype=np.int64)
    out = np.empty(len(dims), dtype=object)
    out[:] = [d if isinstance(d, Sym) else int(d) for d in dims]
    return out


def tidy(a: np.ndarray) -> np.ndarray:
    """An object array whose entries are all integers as int64; any other array unchanged."""
    if a.dtype != object:
        return a
    flat = a.reshape(-1)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in flat):
        return a.astype(np.int64)
    if all(isinstance(v, (bool, np.bool_)) for v in flat):
        return a.astype(np.bool_)
    return a


def as_value(out: Any) -> np.ndarray:
    """A kernel result as a known value: numpy indexing of an object array can return a bare `Sym` scalar."""
    if isinstance(out, np.ndarray):
        return tidy(out)
    if isinstance(out, str):
        value = np.empty((), dtype=object)
        value[()] = Sym(out)
        return value
    return np.asarray(out)


def has_symbols(values: Iterable[np.ndarray | None]) -> bool:
    return any(v is not None and np.asarray(v).dtype == object for v in values)


def symbolic_map(fn: Callable[..., Any], *arrays: np.ndarray) -> np.ndarray:
    """Apply a Python function entrywise over broadcast (object) arrays: used only on small known values."""
    ufunc = np.frompyfunc(fn, len(arrays), 1)
    out = ufunc(*[np.asarray(a, dtype=object) for a in arrays])
    return tidy(np.asarray(out, dtype=object))


def plain(v: Any) -> Any:
    """A numpy scalar entry of an object array as a Python int (Sym unchanged)."""
    return int(v) if isinstance(v, np.integer) else v


# -- numpy dtype helpers ---------------------------------------------------------------------------------------------
def compute_dtype(dt: np.dtype) -> np.dtype:
    """The dtype to compute in: f32 for f16 and bf16 (numpy has no fast half kernels), else the dtype itself."""
    return np.dtype(np.float32) if dt in (np.dtype(np.float16), BF16) else dt


def via_f32(fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """Run `fn` with bf16 operands widened to f32 and cast the result back to the first operand's dtype."""
    dt = arrays[0].dtype
    if dt == BF16:
        return np.asarray(fn(*[a.astype(np.float32) for a in arrays])).astype(BF16)
    out = np.asarray(fn(*arrays))
    return out if out.dtype == dt else out.astype(dt)


def widen(a: np.ndarray) -> np.ndarray:
    """bf16 as f32 (exact), for kernels whose result dtype is not the operand's (comparisons, tests)."""
    return a.astype(np.float32) if a.dtype == BF16 else a


def static_numel(types: Iterable[TensorType | None]) -> int | None:
    """Total elements of the types, or None when one has a symbolic or unknown dim."""
    total = 0
    for t in types:
        if t is None:
            continue
        n = t.numel
        if n is None:
            return None
        total += n
    return total


def moved_bytes(in_types: Iterable[TensorType | None], out_types: Iterable[TensorType | None]) -> int:
    """Bytes read plus written; 0 when any shape is not static."""
    total = 0
    for t in list(in_types) + list(out_types):
        if t is None:
            continue
        n = t.nbytes
        if n is None:
            return 0
        total += n
    return total


# Elements per block of `blockwise`: 64K f32 temporaries (256 KiB each) stay in L2 between passes.
BLOCK = 65536


def blockwise(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dtype: Any) -> np.ndarray:
    """fn applied to contiguous blocks of x, written into one result of `dtype` and x's shape.

    A chain of numpy passes (erf's polynomial, gelu) on a large tensor is bound by memory traffic; block by block
    its temporaries stay in cache, which is 2-4x faster at GPT sizes. fn must be elementwise.
    """
    flat = np.ascontiguousarray(x).reshape(-1)
    if flat.size <= BLOCK:
        return np.asarray(fn(flat), dtype=dtype).reshape(x.shape)
    out = np.empty(flat.size, dtype=dtype)
    for start in range(0, flat.size, BLOCK):
        out[start:start + BLOCK] = fn(flat[start:start + BLOCK])
    return out.reshape(x.shape)

"""Small matching helpers shared by the fusion patterns: operand order, parameters, scalars, single use."""

from __future__ import annotations

from cgpt.ir.core import Operation, Value
from cgpt.passes.rewrite import PatternRewriter

LAYOUT_OPS = ("reshape", "transpose", "squeeze", "unsqueeze", "identity")


def is_parameter(v: Value) -> bool:
    """A value that comes from the weight store or an inline constant (not computed from the inputs)."""
    return v.owner is not None and v.owner.name in ("weight", "constant")


def parameter_through_casts(v: Value) -> Value | None:
    """`v` if it is a parameter; None otherwise."""
    return v if is_parameter(v) else None


def single_use(v: Value) -> bool:
    return len(v.uses) == 1


def split_operands(op: Operation, pred) -> tuple[Value, Value] | None:  # type: ignore[no-untyped-def]
    """For a commutative binary op: (the operand satisfying `pred`, the other one), trying both orders."""
    a, b = op.operands
    if pred(a):
        return a, b
    if pred(b):
        return b, a
    return None


def scalar(rw: PatternRewriter, v: Value) -> float | None:
    """The number `v` holds when it is a known constant with all elements equal."""
    if not is_parameter(v) and rw.value_of(v) is None:
        return None
    return rw.scalar_of(v)


def producer(v: Value, *names: str) -> Operation | None:
    op = v.owner
    return op if op is not None and op.name in names else None

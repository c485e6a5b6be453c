"""Small matching helpers shared by the fusion patterns: operand order, parameters, scalars, single use."""

from __future__ import annotations

from cgpt.ir.core import Operation, Value
from cgpt.passes.rewrite import PatternRewriter

LAYOUT_OPS = ("reshape", "transpose", "squeeze", "unsqueeze", "identity")


def is_parameter(v: Value) -> bool:
    """A value that comes from the weight store or an inline constant (not computed from the inputs)."""
    return v.owner is not None and v.owner.name in ("weight", "constant")


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


def absorbed_producers(region: list[Operation], keep: list[Value], limit: int = 64) -> list[Operation]:
    """Ops outside `region` whose results only `region` (and each other) use, walking up from it: the mask
    builders and splits that die with a fusion, so its location can name them. Sources (weights, constants) and
    the producers of `keep` (the fused op's operands) are not absorbed. Nearest last, so producers come first."""
    inside = set(region)
    kept = {v.owner for v in keep}
    found: list[Operation] = []
    frontier = [v.owner for op in region for v in op.operands]
    while frontier and len(found) < limit:
        op = frontier.pop(0)
        if op is None or op in inside or op in kept or op.name in ("weight", "constant"):
            continue
        if not all(isinstance(u, Operation) and u in inside for r in op.results for u, _ in r.uses):
            continue  # used elsewhere too (or returned): it survives the fusion
        inside.add(op)
        found.append(op)
        frontier.extend(v.owner for v in op.operands)
    return found[::-1]

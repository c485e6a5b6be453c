"""The IR's objects: locations, SSA values with use lists, operations, functions and the module.

A function body is a flat dataflow graph: a doubly linked list of operations in an order where every operand is
defined before its use (checked by the verifier). There is no control flow, so there are no regions or blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cgpt.ir.types import TensorType

if TYPE_CHECKING:
    from cgpt.ir.registry import OpDef
    from cgpt.ir.weights import WeightStore


@dataclass(frozen=True, slots=True)
class Loc:
    """Where an op came from: the ONNX node name(s) it implements. Fusion merges them in order."""

    names: tuple[str, ...] = ()

    @staticmethod
    def fuse(locs: Iterable[Loc]) -> Loc:
        """One location naming every node of `locs` once, in first-seen order."""
        seen: dict[str, None] = {}
        for loc in locs:
            for name in loc.names:
                seen.setdefault(name, None)
        return Loc(tuple(seen))

    def __str__(self) -> str:
        return ", ".join(self.names) if self.names else "unknown"


UNKNOWN_LOC = Loc()


class Value:
    """An SSA value: a function argument or an op result, with its type and the (op, operand index) uses."""

    __slots__ = ("type", "owner", "index", "uses", "name_hint")

    def __init__(self, type: TensorType, owner: Operation | None = None, index: int = 0, name_hint: str | None = None):
        self.type = type
        self.owner = owner  # None for a function argument
        self.index = index
        self.uses: list[tuple[Operation, int]] = []
        self.name_hint = name_hint

    @property
    def users(self) -> list[Operation]:
        """The distinct ops that use this value, in use order."""
        return list(dict.fromkeys(op for op, _ in self.uses))

    @property
    def has_uses(self) -> bool:
        return bool(self.uses)

    def replace_all_uses_with(self, new: Value) -> None:
        """Point every use of this value (including function returns) at `new`."""
        if new is self:
            return
        for op, i in self.uses:
            op.operands[i] = new
            new.uses.append((op, i))
        self.uses.clear()

    def __repr__(self) -> str:
        name = self.owner.name if self.owner else "arg"
        return f"<Value {self.name_hint or '?'} of {name}: {self.type}>"


class Operation:
    """An op instance: name, operands, results, attributes (a dict of plain values) and a location."""

    __slots__ = ("name", "operands", "results", "attributes", "loc", "parent", "prev", "next", "__weakref__")

    def __init__(
        self,
        name: str,
        operands: Iterable[Value],
        result_types: Iterable[TensorType],
        attributes: dict[str, Any] | None = None,
        loc: Loc = UNKNOWN_LOC,
    ) -> None:
        self.name = name
        self.operands: list[Value] = []
        for i, v in enumerate(operands):
            self.operands.append(v)
            v.uses.append((self, i))
        self.results = [Value(t, self, i) for i, t in enumerate(result_types)]
        self.attributes: dict[str, Any] = dict(attributes or {})
        self.loc = loc
        self.parent: Function | None = None
        self.prev: Operation | None = None
        self.next: Operation | None = None

    @property
    def result(self) -> Value:
        """The single result of a one-result op."""
        if len(self.results) != 1:
            raise ValueError(f"op '{self.name}' has {len(self.results)} results, not one")
        return self.results[0]

    @property
    def opdef(self) -> type[OpDef] | None:
        from cgpt.ir.registry import lookup_op

        return lookup_op(self.name)

    def set_operand(self, i: int, v: Value) -> None:
        old = self.operands[i]
        old.uses.remove((self, i))
        self.operands[i] = v
        v.uses.append((self, i))

    def drop_operand_uses(self) -> None:
        """Remove this op from its operands' use lists (before erasing it)."""
        for i, v in enumerate(self.operands):
            try:
                v.uses.remove((self, i))
            except ValueError:
                pass

    def __repr__(self) -> str:
        return f"<Operation {self.name} at {self.loc}>"


class Function:
    """A function: typed arguments, a linked list of ops, and the values it returns."""

    def __init__(self, name: str, arg_types: Iterable[TensorType], arg_names: Iterable[str | None] | None = None):
        self.name = name
        names = list(arg_names) if arg_names is not None else []
        self.args = [Value(t, None, i, names[i] if i < len(names) else None) for i, t in enumerate(arg_types)]
        self.first: Operation | None = None
        self.last: Operation | None = None
        self._outputs: list[Value] = []
        self.output_names: list[str] = []
        self._return_op = _ReturnUser()
        self.parent: Module | None = None

    # The function's return is tracked as a pseudo-user so use lists stay complete.
    @property
    def outputs(self) -> list[Value]:
        return list(self._outputs)

    def set_outputs(self, values: Iterable[Value], names: Iterable[str] | None = None) -> None:
        """Set the returned values and their names (the graph's output names; default: the values' name hints)."""
        for i, v in enumerate(self._outputs):
            v.uses.remove((self._return_op, i))  # type: ignore[arg-type]
        self._outputs = list(values)
        self.output_names = list(names) if names is not None else [
            v.name_hint or f"output_{i}" for i, v in enumerate(self._outputs)
        ]
        self._return_op.operands = self._outputs
        for i, v in enumerate(self._outputs):
            v.uses.append((self._return_op, i))  # type: ignore[arg-type]

    def is_return(self, op: object) -> bool:
        return op is self._return_op

    @property
    def ops(self) -> Iterator[Operation]:
        """Iterate the ops in order. Safe against erasing the current op; take `list(...)` to mutate freely."""
        op = self.first
        while op is not None:
            nxt = op.next
            yield op
            op = nxt

    def __len__(self) -> int:
        return sum(1 for _ in self.ops)

    def append(self, op: Operation) -> Operation:
        return self._link(op, self.last, None)

    def insert_before(self, anchor: Operation, op: Operation) -> Operation:
        return self._link(op, anchor.prev, anchor)

    def insert_after(self, anchor: Operation, op: Operation) -> Operation:
        return self._link(op, anchor, anchor.next)

    def _link(self, op: Operation, prev: Operation | None, nxt: Operation | None) -> Operation:
        if op.parent is not None:
            raise ValueError(f"op '{op.name}' is already in a function")
        op.parent, op.prev, op.next = self, prev, nxt
        if prev is None:
            self.first = op
        else:
            prev.next = op
        if nxt is None:
            self.last = op
        else:
            nxt.prev = op
        return op

    def unlink(self, op: Operation) -> None:
        """Take `op` out of the list, keeping its operand uses (to move it elsewhere)."""
        if op.prev is None:
            self.first = op.next
        else:
            op.prev.next = op.next
        if op.next is None:
            self.last = op.prev
        else:
            op.next.prev = op.prev
        op.parent = op.prev = op.next = None

    def erase(self, op: Operation) -> None:
        """Remove an op whose results are unused."""
        for r in op.results:
            if r.uses:
                users = ", ".join(sorted({u.name for u, _ in r.uses if not self.is_return(u)} or {"return"}))
                raise ValueError(f"cannot erase '{op.name}' at {op.loc}: its result is still used by {users}")
        op.drop_operand_uses()
        self.unlink(op)

    @property
    def arg_types(self) -> list[TensorType]:
        return [a.type for a in self.args]

    @property
    def result_types(self) -> list[TensorType]:
        return [v.type for v in self._outputs]


class _ReturnUser:
    """Stands in as the user of returned values (the `return` terminator)."""

    name = "return"
    results: tuple[Value, ...] = ()
    __slots__ = ("operands",)

    def __init__(self) -> None:
        self.operands: list[Value] = []


@dataclass
class Module:
    """The top level: a name, attributes, functions, and the weight store holding weight data."""

    name: str = "module"
    attributes: dict[str, Any] = field(default_factory=dict)
    functions: list[Function] = field(default_factory=list)
    weights: WeightStore | None = None

    def add_function(self, fn: Function) -> Function:
        fn.parent = self
        self.functions.append(fn)
        return fn

    @property
    def main(self) -> Function:
        for fn in self.functions:
            if fn.name == "main":
                return fn
        if len(self.functions) == 1:
            return self.functions[0]
        raise ValueError("module has no function named 'main'")

    def ops(self) -> Iterator[Operation]:
        for fn in self.functions:
            yield from fn.ops

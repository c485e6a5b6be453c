"""The reference backend: a numpy interpreter over the IR at any level, one registry kernel call per op.

    outputs = run_module(module, {"input_ids": ids})        # {"logits": array}

    interp = Interpreter(module)                             # plan once (slots, last uses, kernels) ...
    for ids in batches:
        interp.run({"input_ids": ids})                       # ... run many times

The plan gives every value a slot and frees each slot right after its last use, so peak memory is the live
set, not the sum of all intermediates. Weights come from the module's weight store as views or memory maps
and are never copied. Inputs are checked against the function's argument types: names, dtypes, ranks, static
dims, and symbolic dims, which must bind to the same size in every input (`?seq` is one number per run).
Steps that do not read input data (an export's shape arithmetic, masks built from it) keep their small results
between runs with the same input shapes, so a repeated run executes only the real compute.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cgpt.ir.core import Function, Module, Operation, Value
from cgpt.ir.diagnostics import RunError
from cgpt.ir.registry import lookup_op
from cgpt.ir.types import Dim, Sym, TensorType, dtype_of_numpy

Kernel = Callable[[list[np.ndarray | None], dict[str, Any]], Any]

# Ops whose result depends on the operand's shape only, never its data.
_SHAPE_READERS = frozenset({"shape", "size", "constant", "weight"})
# Input-independent results up to this many elements are kept between runs with the same input shapes.
CACHE_LIMIT = 1 << 16


@dataclass
class _Step:
    op: Operation
    kernel: Kernel
    attrs: dict[str, Any]
    symbolic_attrs: bool  # some attribute holds a Sym that must be bound per run
    operands: tuple[int, ...]
    results: tuple[int, ...]
    free: tuple[int, ...]  # slots whose last use is this step
    input_free: bool = False  # depends only on input shapes, weights and constants, not on input data


class Interpreter:
    """A prepared run of one function of a module; `run` may be called many times."""

    def __init__(self, module: Module, function: str | None = None, check_types: bool = False) -> None:
        self.module = module
        found = [f for f in module.functions if function is None or f.name == function]
        if not found:
            raise RunError(f"module @{module.name} has no function @{function}")
        self.fn: Function = module.main if function is None else found[0]
        self.check_types = check_types
        self.input_names = [a.name_hint or f"arg{i}" for i, a in enumerate(self.fn.args)]
        self.signature = [(n, a.type) for n, a in zip(self.input_names, self.fn.args, strict=True)]
        slots: dict[Value, int] = {}
        for a in self.fn.args:
            slots[a] = len(slots)
        ops = list(self.fn.ops)
        for op in ops:
            for r in op.results:
                slots[r] = len(slots)
        self._slots = slots
        self._n_slots = len(slots)
        outputs = {slots[v] for v in self.fn.outputs}
        last_use: dict[int, int] = {}
        for i, op in enumerate(ops):
            for v in op.operands:
                last_use[slots[v]] = i
        for a in self.fn.args:
            last_use.setdefault(slots[a], -1)
        for i, op in enumerate(ops):
            for r in op.results:
                last_use.setdefault(slots[r], i)  # a dead result is freed right after it is made
        free_at: dict[int, list[int]] = {}
        for slot, i in last_use.items():
            if slot not in outputs:
                free_at.setdefault(i, []).append(slot)
        self._free_before = tuple(free_at.get(-1, ()))
        self._steps = [
            self._step(
                op, [slots[v] for v in op.operands], [slots[r] for r in op.results], free_at.get(i, [])
            )
            for i, op in enumerate(ops)
        ]
        self._output_slots = [slots[v] for v in self.fn.outputs]
        self._mark_input_free()
        self._cache: dict[int, Any] = {}
        self._cache_key: tuple[tuple[str, int], ...] | None = None

    def _step(self, op: Operation, operands: list[int], results: list[int], free: list[int]) -> _Step:
        opdef = lookup_op(op.name)
        if opdef is None:
            raise RunError(f"op '{op.name}' is not in the op registry", where=_where(op))
        attrs = opdef.with_defaults(op.attributes)
        if op.name == "weight":
            kernel = self._weight_kernel(op)
        else:
            kernel = opdef.kernel
        symbolic = any(_holds_sym(v) for v in attrs.values())
        return _Step(op, kernel, attrs, symbolic, tuple(operands), tuple(results), tuple(free))

    def _mark_input_free(self) -> None:
        """Mark the steps whose results are the same in every run with the same input shapes: the shape
        arithmetic of an export (Shape, Gather, Concat, ... on shapes), masks built from it, constants."""
        free: set[int] = set()
        for step in self._steps:
            opdef = lookup_op(step.op.name)
            if opdef is None or not opdef.pure:
                continue
            if step.op.name in _SHAPE_READERS or all(s in free for s in step.operands):
                step.input_free = True
                free.update(step.results)

    def _weight_kernel(self, op: Operation) -> Kernel:
        store = self.module.weights
        key = op.attributes["name"]
        if store is None or key not in store:
            raise RunError(f"weight '{key}' is not in the module's weight store", where=_where(op))

        def load(_inputs: list[np.ndarray | None], _attrs: dict[str, Any]) -> np.ndarray:
            return store[key]

        return load

    # -- running ---------------------------------------------------------------------------------------------
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute the function; returns {output name: array}. Raises RunError for inputs that do not fit."""
        bindings = check_inputs(self.signature, inputs)
        env: list[Any] = [None] * self._n_slots
        for i, a in enumerate(self.fn.args):
            env[self._slots[a]] = inputs[self.input_names[i]]
        for slot in self._free_before:
            env[slot] = None
        key = tuple(sorted(bindings.items()))
        if key != self._cache_key:  # other input shapes: recompute the shape arithmetic once
            self._cache, self._cache_key = {}, key
        with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
            self._execute(env, bindings)
        return {  # a copy where an output would otherwise share memory with the cache
            name: np.array(env[slot]) if slot in self._cache else np.asarray(env[slot])
            for name, slot in zip(self.fn.output_names, self._output_slots, strict=True)
        }

    def _execute(self, env: list[Any], bindings: dict[str, int]) -> None:
        """Run every step; IEEE results (inf, nan) are values as in ONNX, not warnings."""
        cache = self._cache
        for step in self._steps:
            if step.input_free and step.results[0] in cache:
                for slot in step.results:
                    env[slot] = cache[slot]
                for slot in step.free:
                    env[slot] = None
                continue
            args = [env[s] for s in step.operands]
            attrs = _bind_attrs(step.attrs, bindings) if step.symbolic_attrs else step.attrs
            try:
                out = step.kernel(args, attrs)
            except RunError:
                raise
            except (ValueError, IndexError, TypeError, FloatingPointError, MemoryError) as err:
                raise RunError(f"'{step.op.name}' failed: {err}", where=_where(step.op)) from None
            if len(step.results) == 1:
                env[step.results[0]] = out[0] if isinstance(out, (list, tuple)) else out
            else:
                for slot, value in zip(step.results, out, strict=True):
                    env[slot] = value
            if step.input_free:
                for slot in step.results:
                    value = env[slot]
                    if getattr(value, "size", 0) <= CACHE_LIMIT:
                        cache[slot] = value
            if self.check_types:
                self._check_results(step, env, bindings)
            for slot in step.free:
                env[slot] = None

    def _check_results(self, step: _Step, env: list[Any], bindings: dict[str, int]) -> None:
        for slot, r in zip(step.results, step.op.results, strict=True):
            value = env[slot]
            want = _bind_type(r.type, bindings)
            got = np.asarray(value)
            ok = got.ndim == len(want.shape) and all(
                d is None or d == n for d, n in zip(want.shape, got.shape, strict=True)
            )
            if not ok or got.dtype != r.type.np_dtype:
                raise RunError(
                    f"'{step.op.name}' produced {got.dtype}{_shape_text(got.shape)}, "
                    f"but its result type is {r.type}",
                    where=_where(step.op),
                )


def check_inputs(signature: list[tuple[str, TensorType]], inputs: dict[str, np.ndarray]) -> dict[str, int]:
    """Check `inputs` against (name, type) pairs; return the sizes bound to symbolic dims. Raises RunError."""
    expected = [n for n, _ in signature]
    missing = [n for n in expected if n not in inputs]
    extra = [n for n in inputs if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing input {', '.join(repr(n) for n in missing)}")
        if extra:
            parts.append(f"unknown input {', '.join(repr(n) for n in extra)}")
        raise RunError(f"{'; '.join(parts)} (expected inputs: {', '.join(expected)})")
    bindings: dict[str, int] = {}
    bound_by: dict[str, str] = {}
    for name, t in signature:
        array = inputs[name]
        if not isinstance(array, np.ndarray):
            raise RunError(f"input '{name}' is a {type(array).__name__}, not a numpy array")
        try:
            got = dtype_of_numpy(array.dtype)
        except ValueError:
            got = str(array.dtype)
        if got != t.dtype:
            raise RunError(f"input '{name}' has dtype {got}, expected {t.dtype} (type {t})")
        if array.ndim != t.rank:
            raise RunError(
                f"input '{name}' has shape {_shape_text(array.shape)} (rank {array.ndim}), "
                f"expected {t} (rank {t.rank})"
            )
        for axis, (d, n) in enumerate(zip(t.shape, array.shape, strict=True)):
            if isinstance(d, int):
                if d != n:
                    raise RunError(
                        f"input '{name}' has shape {_shape_text(array.shape)}, expected {t} "
                        f"(dim {axis} must be {d})"
                    )
            elif isinstance(d, str) and _is_name(d):
                if d in bindings and bindings[d] != n:
                    raise RunError(
                        f"input '{name}' has shape {_shape_text(array.shape)}: dim {axis} (?{d}) "
                        f"is {n}, but input '{bound_by[d]}' binds ?{d} to {bindings[d]}"
                    )
                bindings.setdefault(d, int(n))
                bound_by.setdefault(d, name)
    for name, t in signature:  # expressions once every symbol is bound
        for axis, (d, n) in enumerate(zip(t.shape, inputs[name].shape, strict=True)):
            if isinstance(d, str) and not _is_name(d):
                want = eval_dim(d, bindings)
                if want is not None and want != n:
                    raise RunError(f"input '{name}' dim {axis} is {n}, expected ?{d} = {want}")
    return bindings


def run_module(
    module: Module, inputs: dict[str, np.ndarray], check_types: bool = False
) -> dict[str, np.ndarray]:
    """Run the module's main function on `inputs` with the numpy kernels of the op registry."""
    return Interpreter(module, check_types=check_types).run(inputs)


# -- symbolic dims at run time -------------------------------------------------------------------------------
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.floordiv,
    ast.FloorDiv: operator.floordiv,
}


def _is_name(d: str) -> bool:
    return d.isidentifier()


def eval_dim(d: Dim, bindings: dict[str, int]) -> int | None:
    """The size of a dim under `bindings` (`(batch*seq)` with batch=2, seq=9 is 18); None if unbound."""
    if d is None or isinstance(d, int):
        return d
    try:
        tree = ast.parse(str(d), mode="eval").body
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> int | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return bindings.get(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if left is None or right is None:
                return None
            return _BINOPS[type(node.op)](left, right)
        return None

    return ev(tree)


def _holds_sym(v: Any) -> bool:
    if isinstance(v, Sym):
        return True
    if isinstance(v, (list, tuple)):
        return any(_holds_sym(x) for x in v)
    if isinstance(v, np.ndarray) and v.dtype == object:
        return any(isinstance(x, Sym) for x in v.reshape(-1))
    return False


def _bind_value(v: Any, bindings: dict[str, int]) -> Any:
    if isinstance(v, Sym):
        n = eval_dim(v, bindings)
        if n is None:
            raise RunError(f"symbolic dim ?{v} is not bound by the inputs")
        return n
    if isinstance(v, tuple):
        return tuple(_bind_value(x, bindings) for x in v)
    if isinstance(v, list):
        return [_bind_value(x, bindings) for x in v]
    if isinstance(v, np.ndarray) and v.dtype == object:
        return np.array([_bind_value(x, bindings) for x in v.reshape(-1)], dtype=np.int64).reshape(v.shape)
    return v


def _bind_attrs(attrs: dict[str, Any], bindings: dict[str, int]) -> dict[str, Any]:
    return {k: _bind_value(v, bindings) for k, v in attrs.items()}


def _bind_type(t: TensorType, bindings: dict[str, int]) -> TensorType:
    return t.with_shape(tuple(eval_dim(d, bindings) for d in t.shape))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(n) for n in shape) + "]"


def _where(op: Operation) -> str | None:
    return f"loc({op.loc})" if op.loc.names else None

"""Rewrite patterns and the greedy driver that applies them to a fixpoint.

    class FoldDoubleNeg(RewritePattern):
        \"\"\"neg(neg(x)) -> x\"\"\"

        name = "fold-double-neg"
        root = "neg"

        def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
            inner = rw.producer(op.operands[0], "neg")
            if inner is None:
                return False                      # guard first, return early
            rw.replace_op(op, [inner.operands[0]])
            return True

The driver visits every op, tries the patterns rooted at its name, and after a rewrite revisits what changed.
Ops left without users are erased when they are pure. It stops at a fixpoint, or raises PassError naming the
patterns that kept firing when the iteration cap is reached.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from cgpt.ir.builder import Builder, KnownValues
from cgpt.ir.core import UNKNOWN_LOC, Function, Loc, Module, Operation, Value
from cgpt.ir.diagnostics import PassError
from cgpt.ir.registry import lookup_op
from cgpt.ir.types import TensorType
from cgpt.passes.base import PassContext


class RewritePattern:
    """Match one op (the root), check, and rewrite through the rewriter. Return True when it changed the IR."""

    name: ClassVar[str] = ""
    root: ClassVar[str | tuple[str, ...] | None] = None  # op name(s) to try on; None: every op

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        raise NotImplementedError


class PatternRewriter:
    """The only way patterns change the IR, so the driver can track what to revisit."""

    def __init__(self, fn: Function, known: KnownValues) -> None:
        self.fn = fn
        self.known = known
        self.root: Operation | None = None
        self.created: list[Operation] = []
        self.touched: list[Operation] = []

    # -- queries -------------------------------------------------------------------------------------------------
    def producer(self, v: Value, name: str | tuple[str, ...] | None = None) -> Operation | None:
        """The op defining `v` (None for an argument), if its name is `name` (or one of them)."""
        op = v.owner
        if op is None:
            return None
        if name is None or op.name == name or (isinstance(name, tuple) and op.name in name):
            return op
        return None

    def value_of(self, v: Value) -> np.ndarray | None:
        """The compile-time content of `v` (a constant or a folded shape computation), if known."""
        return self.known.get(v)

    def scalar_of(self, v: Value) -> float | None:
        """The single number `v` holds, if it is a known tensor whose elements are all equal."""
        arr = self.value_of(v)
        if arr is None or arr.dtype == object or arr.size == 0:
            return None
        flat = arr.reshape(-1)
        return float(flat[0]) if np.all(flat == flat[0]) else None

    # -- changes ---------------------------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        operands: Sequence[Value],
        attrs: dict[str, Any] | None = None,
        loc: Loc = UNKNOWN_LOC,
        result_types: list[TensorType] | None = None,
    ) -> Operation:
        """Create an op (types inferred) just before the op being rewritten."""
        anchor = self.root
        op = Builder(self.fn, before=anchor, known=self.known).create(name, list(operands), attrs, loc, result_types)
        self.created.append(op)
        return op

    def constant(self, array: np.ndarray, loc: Loc = UNKNOWN_LOC) -> Value:
        return self.create("constant", [], {"value": np.asarray(array)}, loc).result

    def replace_op(self, op: Operation, new_values: Sequence[Value] | Operation) -> None:
        """Replace every use of `op`'s results with `new_values` (or another op's results); `op` dies if pure."""
        values = new_values.results if isinstance(new_values, Operation) else list(new_values)
        if len(values) != len(op.results):
            raise ValueError(f"replacing '{op.name}' ({len(op.results)} results) with {len(values)} values")
        for old, new in zip(op.results, values, strict=True):
            if old.type != new.type:
                raise ValueError(f"replacing a {old.type} by a {new.type} at {op.loc}")
            self.touched.extend(u for u, _ in old.uses if isinstance(u, Operation))
            if new.name_hint is None and old.name_hint is not None:
                new.name_hint = old.name_hint
            old.replace_all_uses_with(new)
        self.erase_if_dead(op)

    def replace_uses(self, old: Value, new: Value) -> None:
        self.touched.extend(u for u, _ in old.uses if isinstance(u, Operation))
        old.replace_all_uses_with(new)

    def set_attribute(self, op: Operation, key: str, value: Any) -> None:
        op.attributes[key] = value
        self.touched.append(op)

    def erase_if_dead(self, op: Operation) -> None:
        """Erase `op` if none of its results is used, and then its operands' producers that died with it."""
        stack = [op]
        while stack:
            cur = stack.pop()
            if cur.parent is None or any(r.uses for r in cur.results):
                continue
            opdef = lookup_op(cur.name)
            if opdef is not None and not opdef.pure:
                continue
            producers = [v.owner for v in cur.operands if v.owner is not None]
            for r in cur.results:
                self.known.forget(r)
            self.fn.erase(cur)
            stack.extend(producers)


def apply_patterns(
    module: Module, patterns: Iterable[RewritePattern], ctx: PassContext, max_rewrites: int | None = None
) -> bool:
    """Apply `patterns` greedily to every function of `module` until none fires. Returns whether anything changed."""
    pats = list(patterns)
    changed = False
    for fn in module.functions:
        changed |= _apply_to_function(fn, pats, ctx, max_rewrites)
    return changed


def _by_root(patterns: list[RewritePattern]) -> tuple[dict[str, list[RewritePattern]], list[RewritePattern]]:
    rooted: dict[str, list[RewritePattern]] = {}
    anywhere: list[RewritePattern] = []
    for p in patterns:
        roots = (p.root,) if isinstance(p.root, str) else p.root
        if roots is None:
            anywhere.append(p)
            continue
        for r in roots:
            rooted.setdefault(r, []).append(p)
    return rooted, anywhere


def _apply_to_function(
    fn: Function, patterns: list[RewritePattern], ctx: PassContext, max_rewrites: int | None
) -> bool:
    from cgpt.ir.builder import fold_known, make_context

    rooted, anywhere = _by_root(patterns)
    known = KnownValues()
    for op in fn.ops:  # what is known at the start: constants and folded shape computations
        ctx_i = make_context(op.name, list(op.operands), op.attributes, known, op.loc)
        for r, arr in zip(op.results, fold_known(op.name, ctx_i, [r.type for r in op.results]), strict=True):
            if arr is not None:
                known.set(r, arr)
    worklist: deque[Operation] = deque(fn.ops)
    queued: set[Operation] = set(worklist)
    fired: Counter[str] = Counter()
    cap = max_rewrites if max_rewrites is not None else max(10_000, 20 * len(worklist))
    total = 0
    while worklist:
        op = worklist.popleft()
        queued.discard(op)
        if op.parent is not fn:
            continue
        for pattern in rooted.get(op.name, []) + anywhere:
            rw = PatternRewriter(fn, known)
            rw.root = op
            loc_before = op.loc
            if not pattern.match_and_rewrite(op, rw):
                continue
            total += 1
            fired[pattern.name] += 1
            ctx.pattern_counts[pattern.name] = ctx.pattern_counts.get(pattern.name, 0) + 1
            if ctx.trace_patterns:
                new_locs = Loc.fuse(o.loc for o in rw.created) if rw.created else loc_before
                made = ", ".join(dict.fromkeys(o.name for o in rw.created)) or "(erased/replaced)"
                ctx.trace(f"[{pattern.name}] {op.name} at loc({loc_before}) -> {made} at loc({new_locs})")
            if total > cap:
                top = ", ".join(f"{n} ({c}x)" for n, c in fired.most_common(5))
                raise PassError(f"rewriting did not converge after {cap} rewrites in @{fn.name}; kept firing: {top}")
            for new in rw.created + rw.touched + ([op] if op.parent is fn else []):
                if new.parent is fn and new not in queued:
                    worklist.append(new)
                    queued.add(new)
                for r in new.results if new.parent is fn else ():
                    for user, _ in r.uses:
                        if isinstance(user, Operation) and user not in queued:
                            worklist.append(user)
                            queued.add(user)
            break
    return total > 0

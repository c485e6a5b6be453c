"""fuse-embedding: token gather plus position gather becomes `embedding`.

    %t = gather(%wte, %input_ids)       %p = gather(%wpe, %positions)     %h = add(%t, %p)
        ->  %h = embedding(%input_ids, %wte, %wpe)

`%positions` may be built any way (Range, a Range unsqueezed and expanded, CumSum of ones): it qualifies when it
evaluates to 0, 1, ..., seq-1 along the sequence for every batch row, at two concrete sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cgpt.ir.core import Loc, Module, Operation, Value
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.fusion.attention import PROBE_SIZES, _bindings
from cgpt.passes.fusion.match import absorbed_producers, is_parameter, producer
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns
from cgpt.passes.slice_eval import SliceEvaluator


def _table_gather(v: Value) -> Operation | None:
    op = producer(v, "gather")
    if op is None or op.attributes.get("axis", 0) != 0:
        return None
    table, idx = op.operands
    return op if is_parameter(table) and table.type.rank == 2 and idx.type.dtype in ("i64", "i32") else None


class FuseEmbeddingPattern(RewritePattern):
    name = "fuse-embedding"
    root = "add"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        a, b = (_table_gather(v) for v in op.operands)
        if a is None or b is None:
            return False
        for tokens, positions in ((a, b), (b, a)):
            ids = tokens.operands[1]
            if ids.owner is not None or ids.type.rank != 2:
                continue  # token ids come straight from the inputs
            if _is_arange(positions.operands[1], ids, rw):
                operands = [ids, tokens.operands[0], positions.operands[0]]
                region = [tokens, positions, op]
                region = absorbed_producers(region, operands) + region
                new = rw.create("embedding", operands, {}, Loc.fuse(o.loc for o in region))
                if new.result.type != op.result.type:
                    rw.erase_if_dead(new)
                    return False
                rw.replace_op(op, new)
                return True
        return False


def _is_arange(pos: Value, ids: Value, rw: PatternRewriter) -> bool:
    fn = rw.fn
    for sizes in (PROBE_SIZES, PROBE_SIZES[1:] + PROBE_SIZES[:1]):
        ev = SliceEvaluator(_bindings(fn, sizes), fn.parent.weights if fn.parent else None)
        try:
            b, s = ev.concrete_type(ids.type)
        except Exception:
            return False
        got = ev.try_value(pos)
        if got is None or got.ndim not in (1, 2) or got.shape[-1] != s:
            return False
        if not np.array_equal(np.broadcast_to(got, (b, s)), np.broadcast_to(np.arange(s), (b, s))):
            return False
    return True


@register_pass
@dataclass
class FuseEmbedding(Pass):
    """Fuse the token and position embedding lookups and their sum into `embedding`."""

    name: ClassVar[str] = "fuse-embedding"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        return apply_patterns(module, [FuseEmbeddingPattern()], ctx)

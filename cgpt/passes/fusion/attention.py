"""fuse-attention: scaled dot-product attention with its head split and merge becomes `attention`.

    q, k, v = split(qkv)  ->  reshape/transpose to heads  ->  matmul(q, k^T) * scale (+ causal mask)
    ->  softmax  ->  matmul(., v)  ->  transpose/reshape back          ==>  %o = attention(%qkv) {heads, ...}

The spellings differ per exporter (scale once after q k^T or 1/sqrt(sqrt(d)) on both q and k; the causal mask from
Trilu, Range + LessOrEqual, a sliced buffer or dynamo's CumSum/GatherND with an IsNaN guard; k^T as one transpose or
Reshape-Transpose-Reshape). So the pattern anchors on matmul(softmax(.), v) and checks each piece by what it
computes: the head layouts by pushing an arange through them, the mask by evaluating it at concrete sizes. It does
not fire when the mask is not causal (or absent), or when the layouts are not the standard head split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cgpt.ir.core import Function, Loc, Module, Operation, Value
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.fusion.match import LAYOUT_OPS, absorbed_producers, producer, scalar, split_operands
from cgpt.passes.registry import register_pass
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns
from cgpt.passes.slice_eval import NotEvaluable, SliceEvaluator

# A mask entry at or below this blocks attention: exp() of it underflows to 0 in f32, as -inf does.
BLOCKED = -1.0e4
PROBE_SIZES = (2, 5, 3, 7)


@dataclass
class Chain:
    """A value traced back through layout ops and scalar multiplies to where it came from."""

    base: Value
    scale: float
    ops: list[Operation]


def trace_back(v: Value, rw: PatternRewriter) -> Chain:
    scale, ops = 1.0, []
    while v.owner is not None:
        op = v.owner
        if op.name in LAYOUT_OPS and len(op.operands) == 1:
            ops.append(op)
            v = op.operands[0]
            continue
        if op.name in ("mul", "div"):
            if op.name == "mul":
                found = split_operands(op, lambda x: scalar(rw, x) is not None)
            else:
                found = (op.operands[1], op.operands[0]) if scalar(rw, op.operands[1]) is not None else None
            factor = scalar(rw, found[0]) if found is not None else None
            if factor is not None and (op.name == "mul" or factor != 0) and op.result.type.shape == found[1].type.shape:
                scale *= factor if op.name == "mul" else 1.0 / factor  # type: ignore[operator]
                ops.append(op)
                v = found[1]
                continue
        break
    return Chain(v, scale, ops)


def _softmax_input(p: Value) -> tuple[Value, list[Operation]] | None:
    """The scores fed to the softmax behind `p`, through a cast or dynamo's where(is_nan(p), 0, p) guard."""
    ops: list[Operation] = []
    while True:
        op = p.owner
        if op is None:
            return None
        if op.name == "softmax":
            axis = op.attributes.get("axis", -1)
            return (op.operands[0], ops + [op]) if axis in (-1, p.type.rank - 1) else None
        if op.name == "cast" and op.operands[0].type == p.type:
            ops.append(op)
            p = op.operands[0]
        elif op.name == "where" and producer(op.operands[0], "is_nan") is not None:
            guarded = op.operands[0].owner.operands[0]
            if op.operands[2] is not guarded:
                return None
            ops += [op, op.operands[0].owner]
            p = guarded
        else:
            return None


def _bindings(fn: Function, sizes: tuple[int, ...]) -> dict[str, int]:
    names = sorted({d for a in fn.args for d in a.type.shape if isinstance(d, str)})
    return {n: sizes[i % len(sizes)] + i // len(sizes) for i, n in enumerate(names)}


def _allowed(ev: SliceEvaluator, scores: Value, fn: Function) -> tuple[Value, np.ndarray | None, list[Operation]]:
    """Split `scores` into (raw scores, allowed[b, h, i, j] or None for no mask, the ops applying the mask)."""
    op = scores.owner
    if op is not None and op.name == "add":
        for raw, mask in (op.operands, op.operands[::-1]):
            m = ev.try_value(mask)
            if m is not None and m.dtype.kind == "f" and np.all((m == 0) | (m <= BLOCKED)):
                return raw, m == 0, [op]
    if op is not None and op.name == "where":
        cond, a, b = op.operands
        c = ev.try_value(cond)
        for raw, fill, keep in ((a, b, True), (b, a, False)):
            f = ev.try_value(fill)
            if c is not None and f is not None and np.all(f <= BLOCKED):
                return raw, c if keep else ~c, [op]
    return scores, None, []


class FuseAttentionPattern(RewritePattern):
    name = "fuse-attention"
    root = "matmul"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        probs, v4 = op.operands
        if op.result.type.rank != 4 or v4.type.rank != 4:
            return False
        _, heads, _, head_dim = v4.type.shape
        if not (isinstance(heads, int) and isinstance(head_dim, int)):
            return False
        found = _softmax_input(probs)
        if found is None:
            return False
        scores, softmax_ops = found
        out_ops = _forward_merge(op)
        if out_ops is None:
            return False
        fn = rw.fn
        masks, raw, mask_ops = [], None, []
        for sizes in (PROBE_SIZES, PROBE_SIZES[1:] + PROBE_SIZES[:1]):
            ev = SliceEvaluator(_bindings(fn, sizes), fn.parent.weights if fn.parent else None)
            raw_i, allowed, mask_ops = _allowed(ev, scores, fn)
            raw = raw_i
            masks.append((ev, allowed))
        score_chain = trace_back(raw, rw)
        qk = producer(score_chain.base, "matmul")
        if qk is None:
            return False
        q, kt, v = trace_back(qk.operands[0], rw), trace_back(qk.operands[1], rw), trace_back(v4, rw)
        if v.scale != 1.0 or any(c.base.type.rank != 3 for c in (q, kt, v)):
            return False
        mask_kind = None
        for ev, allowed in masks:
            kind = _check_layouts(ev, q, kt, v, op, out_ops, heads, head_dim, allowed)
            if kind is None or (mask_kind is not None and kind != mask_kind):
                return False
            mask_kind = kind
        scale = score_chain.scale * q.scale * kt.scale
        if scale <= 0:
            return False
        operands = _packed(q.base, kt.base, v.base)
        attrs = {"heads": heads, "head_dim": head_dim, "scale": float(scale), "mask": mask_kind}
        final = out_ops[-1].result
        # the flattening reshape stays its own op (the next linear absorbs it), so it keeps its own location
        flattened = final.type.rank == 2
        region = [*q.ops, *kt.ops, *v.ops, qk, *score_chain.ops, *mask_ops, *softmax_ops, op,
                  *(out_ops[:-1] if flattened else out_ops)]
        region = absorbed_producers(region, operands) + region
        new = rw.create("attention", operands, attrs, Loc.fuse(o.loc for o in region)).result
        if flattened:
            new = rw.create("reshape", [new], {"shape": (-1, final.type.shape[-1])}, final.owner.loc).result
        if new.type != final.type:
            rw.erase_if_dead(new.owner)
            return False
        rw.replace_op(final.owner, [new])
        return True


def _forward_merge(op: Operation) -> list[Operation] | None:
    """The single-use layout ops after matmul(p, v) up to the merged [B, S, heads*head_dim] value (or its
    flattened [B*S, heads*head_dim] form, which HF Conv1D's reshape produces)."""
    ops: list[Operation] = []
    v = op.result
    while v.type.rank not in (2, 3):
        users = v.users
        if len(users) != 1 or users[0].name not in LAYOUT_OPS or len(v.uses) != 1:
            return None
        ops.append(users[0])
        v = users[0].result
    return ops


def _probe(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


def _check_layouts(ev: SliceEvaluator, q: Chain, kt: Chain, v: Chain, pv: Operation, out_ops: list[Operation],
                   heads: int, head_dim: int, allowed: np.ndarray | None) -> str | None:
    """The mask kind ('causal' or 'none') if q, k, v and the output have the standard head layouts, else None."""
    try:
        b, s, f = ev.concrete_type(q.base.type)
        same = all(ev.concrete_type(c.base.type) == (b, s, f) for c in (kt, v))
        if f != heads * head_dim or not same:
            return None
        x = _probe((b, s, f))
        heads_first = x.reshape(b, s, heads, head_dim).transpose(0, 2, 1, 3)
        for chain, want in ((q, heads_first), (kt, x.reshape(b, s, heads, head_dim).transpose(0, 2, 3, 1)),
                            (v, heads_first)):
            target = chain.ops[0].result if chain.ops else chain.base
            sub = SliceEvaluator(ev.bindings, feeds={chain.base: x})
            got = sub.value(target) / np.float32(chain.scale)
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5):
                return None
        if not out_ops:
            return None
        y = _probe((b, heads, s, head_dim))
        got = SliceEvaluator(ev.bindings, feeds={pv.result: y}).value(out_ops[-1].result)
        if not np.array_equal(got, y.transpose(0, 2, 1, 3).reshape(got.shape)) or got.shape[-1] != f:
            return None
    except (NotEvaluable, ValueError, IndexError, TypeError):
        return None
    if allowed is None:
        return "none"
    try:
        full = np.broadcast_to(allowed, (b, heads, s, s))
    except ValueError:
        return None
    causal = np.tril(np.ones((s, s), dtype=bool))
    if np.array_equal(full, np.broadcast_to(causal, full.shape)):
        return "causal"
    if full.all():
        return "none"
    return None


def _packed(q: Value, k: Value, v: Value) -> list[Value]:
    """[qkv] when q, k, v are the three equal pieces of one split along the last axis, else [q, k, v]."""
    op = q.owner
    if (op is not None and op.name == "split" and len(op.results) == 3 and list(op.results) == [q, k, v]
            and op.attributes.get("axis", 0) in (-1, op.operands[0].type.rank - 1) and len(op.operands) == 1):
        return [op.operands[0]]
    return [q, k, v]


@register_pass
@dataclass
class FuseAttention(Pass):
    """Fuse scaled dot-product attention with a causal (or no) mask and its head split/merge into `attention`."""

    name: ClassVar[str] = "fuse-attention"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        return apply_patterns(module, [FuseAttentionPattern()], ctx)

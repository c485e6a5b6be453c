"""The greedy rewrite driver and the pattern rewriter."""

from __future__ import annotations

import io

import pytest

from cgpt.ir.core import Operation
from cgpt.ir.diagnostics import PassError
from cgpt.ir.parser import parse_module
from cgpt.ir.printer import print_module
from cgpt.ir.verifier import verify_module
from cgpt.passes.base import PassContext
from cgpt.passes.rewrite import PatternRewriter, RewritePattern, apply_patterns

CHAIN = """\
module @m {
  func @main(%x: tensor<4xf32>) -> (tensor<4xf32>) {
    %0 = neg(%x) : (tensor<4xf32>) -> tensor<4xf32> loc("/a")
    %1 = neg(%0) : (tensor<4xf32>) -> tensor<4xf32> loc("/b")
    %2 = neg(%1) : (tensor<4xf32>) -> tensor<4xf32> loc("/c")
    %3 = neg(%2) : (tensor<4xf32>) -> tensor<4xf32> loc("/d")
    return %3 : tensor<4xf32>
  }
}
"""


class FoldDoubleNeg(RewritePattern):
    """neg(neg(x)) -> x"""

    name = "fold-double-neg"
    root = "neg"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        inner = rw.producer(op.operands[0], "neg")
        if inner is None:
            return False
        rw.replace_op(op, [inner.operands[0]])
        return True


class NegToMulMinusOne(RewritePattern):
    """neg(x) -> neg(neg(neg(x))): never converges."""

    name = "explode-neg"
    root = "neg"

    def match_and_rewrite(self, op: Operation, rw: PatternRewriter) -> bool:
        a = rw.create("neg", [op.operands[0]], loc=op.loc).result
        b = rw.create("neg", [a], loc=op.loc).result
        rw.replace_op(op, [rw.create("neg", [b], loc=op.loc).result])
        return True


def test_greedy_driver_reaches_a_fixpoint_and_erases_dead_ops() -> None:
    module = parse_module(CHAIN)
    log = io.StringIO()
    ctx = PassContext(trace_patterns=True, log=log)
    assert apply_patterns(module, [FoldDoubleNeg()], ctx)
    verify_module(module)
    assert [op.name for op in module.main.ops] == []
    assert module.main.outputs == module.main.args
    assert ctx.pattern_counts == {"fold-double-neg": 2}
    assert "[fold-double-neg] neg at loc(/b)" in log.getvalue()


def test_driver_names_the_patterns_that_keep_firing() -> None:
    module = parse_module(CHAIN)
    with pytest.raises(PassError, match=r"did not converge .* kept firing: explode-neg"):
        apply_patterns(module, [NegToMulMinusOne()], PassContext(), max_rewrites=50)


def test_no_match_leaves_the_module_unchanged() -> None:
    module = parse_module(CHAIN.replace("neg(%0)", "exp(%0)").replace("neg(%2)", "exp(%2)"))
    before = print_module(module)
    assert not apply_patterns(module, [FoldDoubleNeg()], PassContext())
    assert print_module(module) == before

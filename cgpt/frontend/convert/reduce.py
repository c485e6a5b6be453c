"""Reductions: axes are an attribute before opset 18 (13 for ReduceSum) and an optional input after; the graph
ops take either form, so the node's own form passes through."""

from __future__ import annotations

from cgpt.frontend.convert import same_op

for _op in (
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
):
    same_op(_op)
for _op in ("ArgMax", "ArgMin", "CumSum"):
    same_op(_op)

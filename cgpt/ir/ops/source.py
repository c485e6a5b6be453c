"""Ops that bring values into a function: weights (data in the weight store) and small inline constants."""

from __future__ import annotations

from typing import Any

import numpy as np

from cgpt.ir.core import Operation
from cgpt.ir.diagnostics import VerifyError
from cgpt.ir.registry import Attr, InferContext, OpDef, register_op
from cgpt.ir.types import TensorType, type_of_array

# Constants with more elements than this live in the weight store, not in the text.
INLINE_CONSTANT_LIMIT = 64


@register_op
class Weight(OpDef):
    """A named tensor whose data lives in the module's weight store (never printed inline).

        %wte = weight "transformer.wte.weight" : tensor<50257x768xf32>
    """

    name = "weight"
    level = "source"
    attributes = {"name": Attr("str", doc="key in the weight store")}
    results = ("out",)

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        raise ctx.error("a weight's type is declared, not inferred")

    @classmethod
    def verify(cls, op: Operation) -> None:
        fn = op.parent
        store = fn.parent.weights if fn is not None and fn.parent is not None else None
        if store is None:
            return
        key = op.attributes["name"]
        if key not in store:
            raise VerifyError(f"weight '{key}' is not in the weight store")
        declared = store.type_of(key)
        if declared != op.result.type:
            raise VerifyError(f"weight '{key}' is {declared} in the weight store but declared {op.result.type}")


@register_op
class Constant(OpDef):
    """A small tensor written inline (shapes, scalars, short vectors).

        %c = constant dense<[1, 128, 768]> : tensor<3xi64>
    """

    name = "constant"
    level = "source"
    attributes = {"value": Attr("dense", doc="the tensor")}

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        return [type_of_array(ctx.attrs["value"])]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return attrs["value"]

    @classmethod
    def fold(cls, ctx: InferContext) -> list[np.ndarray]:
        return [ctx.attrs["value"]]

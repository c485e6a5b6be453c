"""print-op-stats: count ops by name (a JSON object on stderr); changes nothing."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from cgpt.ir.core import Module
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.registry import register_pass


def op_counts(module: Module) -> dict[str, int]:
    """{op name: count} over the whole module, sorted by name."""
    return dict(sorted(Counter(op.name for op in module.ops()).items()))


@register_pass
@dataclass
class PrintOpStats(Pass):
    """Print {op name: count} of the module as one JSON line on stderr.

    Example: `cgpt-opt model.onnx -p canonicalize,fuse,print-op-stats`
    """

    name: ClassVar[str] = "print-op-stats"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        print(json.dumps(op_counts(module)), file=ctx.log)
        return False

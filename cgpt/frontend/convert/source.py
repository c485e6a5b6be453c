"""Constant nodes are turned into `constant` (or `weight`) ops by the importer itself; this entry marks them
supported."""

from __future__ import annotations

from cgpt.frontend.convert import ConvertContext, converter
from cgpt.ir.core import Value


@converter("Constant")
def constant(ctx: ConvertContext) -> list[Value | None]:
    raise ctx.error("Constant nodes are converted by the importer")  # never reached

"""Mesh ops: a fused op bound to a region of PEs and a tiling, plus explicit transfers between regions.

    %y = mesh.linear(%x, %w, %b) {activation = "gelu", region = #mesh.rect<x = 0, y = 0, w = 96, h = 64>,
         tiling = #mesh.tiling<w = 96, h = 64>, layer = 3} : (...) -> ... loc(fused[...])
    %t = mesh.transfer(%y) {src = #mesh.rect<...>, dst = #mesh.rect<...>, bytes = 589824, hops = 97, color = 2}

A mesh op computes exactly what its fused op computes (same kernel), so the reference backend runs placed
programs unchanged; the simulator computes it the way the tiling distributes it. The module carries the target it
was placed for (`target = #mesh.target<...>`), so a placed program verifies on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from cgpt.ir.attributes import dialect_attr
from cgpt.ir.core import Function, Operation
from cgpt.ir.diagnostics import VerifyError
from cgpt.ir.ops import fused
from cgpt.ir.registry import Attr, Cost, InferContext, OpDef, register_function_check, register_op
from cgpt.ir.types import TensorType


@dialect_attr("mesh.rect")
@dataclass(frozen=True)
class MeshRect:
    """PEs x .. x+w-1 (columns, west to east) by y .. y+h-1 (rows, north to south)."""

    x: int
    y: int
    w: int
    h: int

    @property
    def pes(self) -> int:
        return self.w * self.h

    def overlaps(self, other: MeshRect) -> bool:
        return self.x < other.x + other.w and other.x < self.x + self.w and self.y < other.y + other.h and (
            other.y < self.y + self.h)


@dialect_attr("mesh.tiling")
@dataclass(frozen=True)
class MeshTiling:
    """How an op's work is split over its region: `w` column blocks (a linear's N, attention's heads, features) by
    `h` row blocks (a linear's K, attention's key blocks, tokens). w <= region.w and h <= region.h."""

    w: int
    h: int


@dialect_attr("mesh.target")
@dataclass(frozen=True)
class MeshTarget:
    """The target a program was placed for (the fields of a target TOML; rates per PE per cycle)."""

    name: str
    width: int
    height: int
    sram_bytes_per_pe: int
    sram_reserved_bytes: int
    sram_read_bytes_per_cycle: float
    sram_write_bytes_per_cycle: float
    flops_f32: float
    flops_f16: float
    flops_bf16: float
    clock_hz: float
    link_bytes_per_cycle: float
    hop_latency_cycles: int
    ramp_latency_cycles: int
    routing_colors: int
    stream_bytes_per_s: float


MESH_ATTRS = {
    "region": Attr(MeshRect, None, "the PEs this op runs on (set by mesh-place)"),
    "tiling": Attr(MeshTiling, None, "how the op's work splits over the region (set by mesh-place)"),
    "layer": Attr("int", -1, "transformer block index (-1: none), for reports and pictures"),
}


def target_of(op: Operation) -> MeshTarget | None:
    fn = op.parent
    module = fn.parent if fn is not None else None
    t = module.attributes.get("target") if module is not None else None
    return t if isinstance(t, MeshTarget) else None


def _check_placement(op: Operation, region: MeshRect, tiling: MeshTiling | None) -> None:
    if region.w < 1 or region.h < 1 or region.x < 0 or region.y < 0:
        raise VerifyError(f"'{op.name}': region {_rect(region)} must have x, y >= 0 and w, h >= 1")
    target = target_of(op)
    if target is not None and (region.x + region.w > target.width or region.y + region.h > target.height):
        raise VerifyError(
            f"'{op.name}': region {_rect(region)} leaves the {target.width}x{target.height} mesh of '{target.name}'"
        )
    if tiling is not None and not (1 <= tiling.w <= region.w and 1 <= tiling.h <= region.h):
        raise VerifyError(f"'{op.name}': tiling {tiling.w}x{tiling.h} does not fit its {region.w}x{region.h} region")


def _rect(r: MeshRect) -> str:
    return f"<x = {r.x}, y = {r.y}, w = {r.w}, h = {r.h}>"


def _mesh_op(base: type[OpDef]) -> type[OpDef]:
    """Declare `mesh.<name>`: the fused op `base` with a region and a tiling."""

    class MeshOp(base):  # type: ignore[valid-type, misc]
        name = f"mesh.{base.name}"
        level = "mesh"
        attributes = {**base.attributes, **MESH_ATTRS}
        fused_name: ClassVar[str] = base.name

        @classmethod
        def verify(cls, op: Operation) -> None:
            base.verify(op)
            region = op.attributes.get("region")
            if region is not None:
                _check_placement(op, region, op.attributes.get("tiling"))

    MeshOp.__name__ = MeshOp.__qualname__ = f"Mesh{base.__name__}"
    MeshOp.__doc__ = f"`{base.name}` placed on a region of PEs with a tiling.\n\n        {_placed_example(base)}\n"
    return register_op(MeshOp)


def _placed_example(base: type[OpDef]) -> str:
    """The fused op's first docstring example as its mesh op, placed on an 8x4 region."""
    head, _, rest = base.example().splitlines()[0].partition(f"= {base.name}(")
    operands, _, tail = rest.partition(")")
    attrs, types = tail.strip()[1:].split("}", 1) if tail.strip().startswith("{") else ("", tail)
    placement = "region = #mesh.rect<x = 0, y = 0, w = 8, h = 4>, tiling = #mesh.tiling<w = 8, h = 4>"
    attrs = f"{attrs}, {placement}" if attrs else placement
    return f"{head}= mesh.{base.name}({operands}) {{{attrs}}} {types.strip()}"


MeshEmbedding = _mesh_op(fused.Embedding)
MeshLayerNorm = _mesh_op(fused.LayerNorm)
MeshLinear = _mesh_op(fused.Linear)
MeshAttention = _mesh_op(fused.Attention)
MeshResidual = _mesh_op(fused.Residual)
MESH_OF_FUSED = {cls.fused_name: cls.name for cls in (MeshEmbedding, MeshLayerNorm, MeshLinear, MeshAttention,
                                                      MeshResidual)}


@register_op
class Transfer(OpDef):
    """Moves a value from its producer's region to a consumer's region along a dimension-ordered XY route.
    The value is unchanged; `bytes` is per sample, `hops` the route length, `color` the routing color it uses.

        %t = mesh.transfer(%y) {src = #mesh.rect<x = 0, y = 0, w = 4, h = 4>, dst = #mesh.rect<x = 4, y = 0, w = 4, h = 4>, bytes = 4096, hops = 4, color = 0} : (tensor<1x8x64xf32>) -> tensor<1x8x64xf32>
    """

    name = "mesh.transfer"
    level = "mesh"
    operands = ("x",)
    attributes = {
        "src": Attr(MeshRect, doc="producer region"),
        "dst": Attr(MeshRect, doc="consumer region"),
        "bytes": Attr("int", doc="bytes moved per sample", min=0),
        "hops": Attr("int", doc="route length in hops", min=0),
        "color": Attr("int", 0, "routing color", min=0),
    }

    @classmethod
    def infer(cls, ctx: InferContext) -> list[TensorType]:
        return [ctx.type(0)]

    @classmethod
    def kernel(cls, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
        return inputs[0]  # type: ignore[return-value]

    @classmethod
    def verify(cls, op: Operation) -> None:
        for key in ("src", "dst"):
            _check_placement(op, op.attributes[key], None)
        target = target_of(op)
        if target is not None and op.attributes.get("color", 0) >= target.routing_colors:
            raise VerifyError(f"'mesh.transfer': color {op.attributes['color']} exceeds the target's "
                              f"{target.routing_colors} routing colors")

    @classmethod
    def cost(cls, in_types: Sequence[TensorType], out_types: Sequence[TensorType], attrs: dict[str, Any]) -> Cost:
        return Cost(flops=0, bytes=int(attrs.get("bytes", 0)))


def placed_ops(ops: Sequence[Operation]) -> list[Operation]:
    """The ops that own a region (mesh ops other than transfers)."""
    return [op for op in ops if op.name.startswith("mesh.") and op.attributes.get("region") is not None]


@register_function_check
def check_no_overlap(fn: Function) -> None:
    """Regions of different ops must not overlap (except in streaming mode, where ops take turns on the mesh)."""
    module = fn.parent
    if module is None or module.attributes.get("mode", "pipelined") == "streaming":
        return
    placed = placed_ops(list(fn.ops))
    rects = np.array([[o.attributes["region"].x, o.attributes["region"].y, o.attributes["region"].w,
                       o.attributes["region"].h] for o in placed], dtype=np.int64).reshape(-1, 4)
    if len(rects) < 2:
        return
    x0, y0 = rects[:, 0], rects[:, 1]
    x1, y1 = x0 + rects[:, 2], y0 + rects[:, 3]
    hit = (x0[:, None] < x1[None, :]) & (x0[None, :] < x1[:, None]) & (y0[:, None] < y1[None, :]) & (
        y0[None, :] < y1[:, None])
    np.fill_diagonal(hit, False)
    shared = {i: j for i, j in zip(*np.nonzero(np.triu(hit)), strict=True)}
    for i, j in shared.items():
        a, b = placed[i], placed[j]
        if a.attributes["region"] == b.attributes["region"] and _shares_region(a, b):
            continue
        raise VerifyError(
            f"regions overlap: '{a.name}' at {_rect(a.attributes['region'])} (loc {a.loc}) and '{b.name}' at "
            f"{_rect(b.attributes['region'])} (loc {b.loc})"
        )


def _shares_region(a: Operation, b: Operation) -> bool:
    """Ops deliberately co-located (a tied embedding and LM head share one region and one copy of the table)."""
    return bool(set(v for v in a.operands if v.owner is not None and v.owner.name == "weight") &
                set(v for v in b.operands if v.owner is not None and v.owner.name == "weight"))

"""Reading a program compiled for the mesh: its target, mode and dtype, each op's kernel spec, the regions ops
share, the placement instance, and the routes of its transfers. The mesh passes, the report and the simulator all
see a placed program through these functions, so they agree on what it means."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from cgpt.backends.mesh.kernels import KernelSpec, cycles_table, min_pes, spec_for
from cgpt.backends.mesh.placement import KernelDemand, Rect, TrafficEdge
from cgpt.backends.mesh.routing import RouteResult, route_transfers
from cgpt.backends.mesh.target import Target, resolve_target
from cgpt.ir.core import Function, Module, Operation
from cgpt.ir.diagnostics import CompileError
from cgpt.ir.ops.mesh import MeshRect, MeshTarget

MODES = ("pipelined", "streaming")


def target_attr(t: Target) -> MeshTarget:
    return MeshTarget(
        name=t.name, width=t.width, height=t.height, sram_bytes_per_pe=t.sram_bytes_per_pe,
        sram_reserved_bytes=t.sram_reserved_bytes, sram_read_bytes_per_cycle=float(t.sram_read_bytes_per_cycle),
        sram_write_bytes_per_cycle=float(t.sram_write_bytes_per_cycle), flops_f32=float(t.flops_per_cycle["f32"]),
        flops_f16=float(t.flops_per_cycle["f16"]), flops_bf16=float(t.flops_per_cycle["bf16"]),
        clock_hz=float(t.clock_hz), link_bytes_per_cycle=float(t.link_bytes_per_cycle),
        hop_latency_cycles=int(t.hop_latency_cycles), ramp_latency_cycles=int(t.ramp_latency_cycles),
        routing_colors=int(t.routing_colors), stream_bytes_per_s=float(t.stream_bytes_per_s),
    )


def target_of_attr(a: MeshTarget) -> Target:
    fields = {f.name: getattr(a, f.name) for f in dataclasses.fields(a)}
    flops = {"f32": fields.pop("flops_f32"), "f16": fields.pop("flops_f16"), "bf16": fields.pop("flops_bf16")}
    return Target(flops_per_cycle=flops, **fields)


def module_target(module: Module, preset: str = "", config: str = "") -> Target:
    """The module's target: its `target` attribute, else the preset or file named, else the default preset."""
    attr = module.attributes.get("target")
    if isinstance(attr, MeshTarget) and not preset and not config:
        return target_of_attr(attr)
    return resolve_target(preset or None, config or None)


def module_mode(module: Module) -> str:
    return str(module.attributes.get("mode", "pipelined"))


def module_dtype(module: Module) -> str:
    return str(module.attributes.get("dtype", "f32"))


def static(op: Operation, dims: tuple) -> tuple[int, ...]:  # type: ignore[type-arg]
    if not all(isinstance(d, int) for d in dims):
        raise CompileError(
            f"'{op.name}' has symbolic shape {list(dims)}; the mesh target needs static shapes "
            "(pass --shape input_ids=1x128)", where=f"loc({op.loc})")
    return tuple(int(d) for d in dims)


def kernel_spec(op: Operation, target: Target, mode: str, tied: frozenset[str] = frozenset()) -> KernelSpec:
    """The cost model's view of a (fused or mesh) op: tokens per sample, sizes, dtype, resident weights."""
    kind = op.name.removeprefix("mesh.")
    out = op.results[0].type
    dtype = out.dtype if out.dtype in ("f32", "f16", "bf16") else "f32"
    shape = static(op, out.shape)
    tokens = shape[1] if len(shape) >= 2 else 1
    weights = [v for v in op.operands if v.owner is not None and v.owner.name == "weight"]
    weight_bytes = sum(v.type.nbytes or 0 for v in weights)
    streaming = mode == "streaming"
    common = dict(tokens=tokens, itemsize=out.itemsize, weight_bytes=weight_bytes, resident_weights=not streaming)
    if kind == "linear":
        w = op.operands[1].type.shape
        k, n = (w[1], w[0]) if op.attributes.get("transpose_w", False) else (w[0], w[1])
        return spec_for("linear", target, dtype, k=int(k), n=int(n), **common)
    if kind == "attention":
        return spec_for("attention", target, dtype, heads=int(op.attributes["heads"]),
                        head_dim=int(op.attributes["head_dim"]), n=shape[-1], **common)
    if kind in ("layer_norm", "residual"):
        return spec_for(kind, target, dtype, n=shape[-1], **common)
    if kind == "embedding":
        rows = sum(int(v.type.shape[0]) for v in op.operands[1:])
        table_is_shared = op.operands[1].owner is not None and op.operands[1].owner.attributes.get("name") in tied
        if table_is_shared:  # the LM head's region holds the token table; only positions are extra
            rows = sum(int(v.type.shape[0]) for v in op.operands[2:])
            common["weight_bytes"] = sum(v.type.nbytes or 0 for v in op.operands[2:])
        return spec_for("embedding", target, dtype, k=rows, n=shape[-1], **common)
    raise CompileError(f"no mesh kernel for op '{op.name}'", where=f"loc({op.loc})")


def tied_tables(module: Module) -> frozenset[str]:
    """Weights read both as an embedding table and by a linear (a tied LM head): they are stored once, in the
    linear's region, which the embedding shares."""
    tables: set[str] = set()
    linears: set[str] = set()
    for op in module.ops():
        kind = op.name.removeprefix("mesh.")
        if kind == "embedding" and op.operands[1].owner is not None and op.operands[1].owner.name == "weight":
            tables.add(op.operands[1].owner.attributes["name"])
        if kind == "linear" and op.operands[1].owner is not None and op.operands[1].owner.name == "weight":
            linears.add(op.operands[1].owner.attributes["name"])
    return frozenset(tables & linears)


def layer_of(op: Operation) -> int | None:
    """The transformer block an op belongs to, read from its ONNX location (`/h.3/`, `layers.3`, `blocks.3`)."""
    for name in op.loc.names:
        m = _LAYER.search(name)
        if m:
            return int(next(g for g in m.groups() if g is not None))
    return None


def layers_of(ops: list[Operation]) -> dict[Operation, int]:
    """Block index of each op (-1 outside the blocks): from locations when they say, else from the structure of a
    pre-LN transformer (a block runs from a layer norm to its second residual add)."""
    from_locs = {op: layer_of(op) for op in ops}
    if any(v is not None for v in from_locs.values()):
        return {op: (-1 if v is None else v) for op, v in from_locs.items()}
    kinds = [op.name.removeprefix("mesh.") for op in ops]
    residual_at = [i for i, k in enumerate(kinds) if k == "residual"]
    first_norm = kinds.index("layer_norm") if "layer_norm" in kinds else len(ops)
    last = residual_at[-1] if residual_at else -1
    out, seen = {}, 0
    for i, op in enumerate(ops):
        out[op] = seen // 2 if first_norm <= i <= last else -1
        seen += kinds[i] == "residual"
    return out


_LAYER = re.compile(r"(?:\bh|layers?|blocks?)[._/](\d+)(?:\b|[._/])")


@dataclass(frozen=True)
class GroupCycles:
    """Cycles of ops sharing one region, run one after another there (a tied embedding and LM head)."""

    specs: tuple[KernelSpec, ...]
    width: int
    height: int

    def __call__(self, w: np.ndarray, h: np.ndarray) -> np.ndarray:
        return sum(cycles_table(s, self.width, self.height)(w, h) for s in self.specs)


def region_groups(fn: Function, tied: frozenset[str]) -> list[list[Operation]]:
    """Mesh ops in program order, grouped so that ops reading the same tied table share a region."""
    groups: list[list[Operation]] = []
    by_table: dict[str, list[Operation]] = {}
    for op in fn.ops:
        if not op.name.startswith("mesh.") or op.name == "mesh.transfer":
            continue
        table = next((v.owner.attributes["name"] for v in op.operands
                      if v.owner is not None and v.owner.name == "weight" and v.owner.attributes["name"] in tied), None)
        if table is not None and table in by_table:
            by_table[table].append(op)
            continue
        groups.append([op])
        if table is not None:
            by_table[table] = groups[-1]
    return groups


def group_name(i: int) -> str:
    return f"r{i}"


def bytes_per_sample(op: Operation) -> float:
    t = op.results[0].type
    batch = t.shape[0] if t.rank >= 3 and isinstance(t.shape[0], int) else 1
    return float(t.nbytes or 0) / max(batch, 1)


def placement_problem(
    groups: list[list[Operation]], specs: dict[Operation, KernelSpec], target: Target
) -> tuple[list[KernelDemand], list[TrafficEdge]]:
    """The placement instance of a function: one kernel per region group, one edge per producer-consumer pair."""
    index = {op: i for i, g in enumerate(groups) for op in g}
    kernels = [
        KernelDemand(group_name(i), GroupCycles(tuple(specs[op] for op in g), target.width, target.height),
                     sum(min_pes(specs[op], target.width, target.height) for op in g))
        for i, g in enumerate(groups)
    ]
    edges: dict[tuple[str, str], float] = {}
    for g in groups:
        for op in g:
            for v in op.operands:
                src = v.owner
                while src is not None and src.name == "mesh.transfer":
                    src = src.operands[0].owner
                if src in index and index[src] != index[op]:
                    key = (group_name(index[src]), group_name(index[op]))
                    edges[key] = edges.get(key, 0.0) + bytes_per_sample(src)
    return kernels, [TrafficEdge(a, b, n) for (a, b), n in edges.items()]


def transfer_routes(fn: Function, target: Target) -> RouteResult:
    """Route the function's mesh.transfer ops (from their attributes) and return the link loads and colors."""
    transfers = [op for op in fn.ops if op.name == "mesh.transfer"]
    rects: dict[str, Rect] = {}
    edges = []
    for op in transfers:
        names = []
        for r in (op.attributes["src"], op.attributes["dst"]):
            name = f"{r.x},{r.y},{r.w},{r.h}"  # one rectangle per region, however many transfers use it
            rects[name] = rect_of(r)
            names.append(name)
        edges.append(TrafficEdge(names[0], names[1], float(op.attributes["bytes"])))
    return route_transfers(rects, edges, target)


def rect_of(r: MeshRect) -> Rect:
    return Rect(r.x, r.y, r.w, r.h)

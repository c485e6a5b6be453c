"""The per-kernel cost model: cycles per sample and SRAM per PE of each fused op on a w x h block of PEs.

One model serves partitioning (which tilings fit), placement (cycles as a function of the rectangle), the memory
plan and the simulator's timing. Every kernel streams the T tokens of a sample through its PEs; per token it is
bound by the slowest of compute, SRAM reads, and the wavelets it must receive or send on one link, and it pays the
fill latency of its broadcast and reduce chains once (the collective model of Luczynski et al., HPDC'24:
T = max(C, E/N) + L + (2 T_R + 1) D, with the per-token terms as C and E/N):

    linear    N split over w columns, K over h rows: kb = ceil(K/h), nb = ceil(N/w) per PE; x broadcast along
              rows, f32 partial sums chain-reduced along columns
    attention heads over w columns, keys over h rows (K and V resident per key block); q broadcast down columns,
              flash-style partial outputs reduced across rows; computed dense (no causal skipping)
    layer_norm, residual   features over w, tokens over h
    embedding table elements spread over all PEs; each token's row leaves through the h row links

A kernel also never beats its edge bandwidth: a sample's activations enter through one edge and leave through
another, and a region only min(w, h) PEs thick offers that many parallel links on each.

`cycles_table(spec, W, H)` evaluates a kernel on every w x h up to the mesh and takes the running minimum over
smaller shapes (a kernel may leave PEs idle), so cycles never grow with the rectangle; `best_tiling` recovers the
w x h actually used.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cgpt.backends.mesh.target import Target

ACC_BYTES = 4  # partial sums are f32 whatever the storage dtype
INF = np.inf


@dataclass(frozen=True)
class KernelSpec:
    """What the cost model needs of one op: its kind and sizes per sample, dtype and target rates."""

    kind: str  # linear, attention, layer_norm, residual, embedding
    tokens: int  # tokens per sample (sequence length)
    k: int = 0  # linear: contraction; embedding: table rows (vocab + positions)
    n: int = 0  # output features
    heads: int = 0
    head_dim: int = 0
    itemsize: int = 4
    weight_bytes: int = 0
    resident_weights: bool = True  # False in streaming mode, or for a table another kernel already holds
    flops_per_cycle: float = 2.0
    link_bytes_per_cycle: float = 4.0
    sram_read_bytes_per_cycle: float = 16.0
    hop_latency: int = 1
    ramp_latency: int = 2
    sram_usable: int = 43008

    @property
    def flops(self) -> float:
        """FLOPs per sample."""
        t = self.tokens
        if self.kind == "linear":
            return 2.0 * t * self.k * self.n
        if self.kind == "attention":
            return (4.0 * self.head_dim + 5.0) * self.heads * t * t
        if self.kind == "layer_norm":
            return 8.0 * t * self.n
        return float(t * self.n)


def spec_for(kind: str, target: Target, dtype: str, **sizes: int | bool) -> KernelSpec:
    return KernelSpec(
        kind=kind,
        flops_per_cycle=float(target.flops_per_cycle[dtype]),
        link_bytes_per_cycle=float(target.link_bytes_per_cycle),
        sram_read_bytes_per_cycle=float(target.sram_read_bytes_per_cycle),
        hop_latency=int(target.hop_latency_cycles),
        ramp_latency=int(target.ramp_latency_cycles),
        sram_usable=int(target.sram_usable_bytes_per_pe),
        **sizes,  # type: ignore[arg-type]
    )


def _max(terms: list[np.ndarray | float]) -> np.ndarray:
    return functools.reduce(np.maximum, terms)


def _cdiv(a: int | np.ndarray, b: np.ndarray) -> np.ndarray:
    return -(-np.asarray(a) // b)


def raw_cycles_and_sram(spec: KernelSpec, w: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cycles per sample, SRAM bytes per PE) of `spec` tiled exactly w x h (broadcasting arrays)."""
    w = np.asarray(w, dtype=np.int64)
    h = np.asarray(h, dtype=np.int64)
    s = spec
    t, isz, fpc, link = s.tokens, s.itemsize, s.flops_per_cycle, s.link_bytes_per_cycle
    fill = (w + h) * s.hop_latency + 2 * s.ramp_latency
    weights_resident = 1 if s.resident_weights else 0
    if s.kind == "linear":
        kb, nb = _cdiv(s.k, h), _cdiv(s.n, w)
        per_token = _max([
            2.0 * kb * nb / fpc,
            kb * nb * isz / s.sram_read_bytes_per_cycle,
            kb * isz / link,
            nb * ACC_BYTES / link,
        ])
        sram = weights_resident * kb * nb * isz + 2 * kb * isz + 2 * nb * ACC_BYTES
        cycles = t * per_token + fill
    elif s.kind == "attention":
        hb, sb = _cdiv(s.heads, w), _cdiv(t, h)
        per_token = _max([
            (4.0 * s.head_dim + 5.0) * hb * sb / fpc,
            hb * s.head_dim * isz / link,
            hb * (s.head_dim + 2) * ACC_BYTES / link,
        ])
        kv_arrival = sb * 2.0 * hb * s.head_dim * isz / link
        sram = sb * hb * s.head_dim * 2 * isz + 2 * hb * s.head_dim * isz + hb * (s.head_dim + 2) * ACC_BYTES
        cycles = t * per_token + kv_arrival + fill
    elif s.kind in ("layer_norm", "residual"):
        db, tb = _cdiv(s.n, w), _cdiv(t, h)
        work = 8.0 if s.kind == "layer_norm" else 1.0
        streams = 1 if s.kind == "layer_norm" else 2
        per_token = _max([work * db / fpc, streams * db * isz / link, np.full_like(db, 2.0, dtype=float)])
        params = 2 * db * isz if s.kind == "layer_norm" else 0
        sram = weights_resident * params + 2 * (streams + 1) * db * isz
        cycles = tb * per_token + fill + (2 * w * s.hop_latency if s.kind == "layer_norm" else 0)
    elif s.kind == "embedding":
        share = _cdiv(s.k * s.n, w * h)
        sram = weights_resident * share * isz + 2 * s.n * isz
        out_links = np.minimum(h, t)
        cycles = t * s.n * isz / (link * out_links) + t * s.n / (fpc * w * h) + fill
    else:
        raise ValueError(f"no cost model for kernel kind '{s.kind}'")
    # A sample's activations enter through one edge of the region and leave through another, each at least
    # min(w, h) links wide: a region one PE thick funnels them however the transfer is routed.
    io = t * max(s.n, s.k if s.kind == "linear" else s.n) * isz / (2 * link * np.minimum(w, h))
    cycles = np.maximum(cycles, io)
    return np.asarray(cycles, dtype=np.float64), np.asarray(sram, dtype=np.int64)


@dataclass(frozen=True)
class KernelTable:
    """Cycles of the best tiling that fits in every w x h rectangle up to the mesh."""

    exact: np.ndarray  # [H, W]: cycles of exactly that tiling (inf: its SRAM share does not fit)
    cycles: np.ndarray  # [H, W]: best cycles within h rows and w columns (the running minimum of `exact`)

    def __call__(self, w: np.ndarray, h: np.ndarray) -> np.ndarray:
        w = np.clip(np.asarray(w, dtype=np.int64), 1, self.cycles.shape[1])
        h = np.clip(np.asarray(h, dtype=np.int64), 1, self.cycles.shape[0])
        return self.cycles[h - 1, w - 1]

    def best(self, w: int, h: int) -> tuple[int, int]:
        """The tiling (w', h') <= (w, h) that achieves `cycles[h-1, w-1]` (fewest rows, then columns, on ties)."""
        block = self.exact[:h, :w]
        i = int(np.argmin(block))
        return i % block.shape[1] + 1, i // block.shape[1] + 1


@lru_cache(maxsize=64)
def cycles_table(spec: KernelSpec, width: int, height: int) -> KernelTable:
    """The envelope of `spec` over the mesh: for each (w, h), the best exact tiling w' <= w, h' <= h that fits SRAM."""
    ws = np.arange(1, width + 1, dtype=np.int64)[None, :]
    hs = np.arange(1, height + 1, dtype=np.int64)[:, None]
    cycles, sram = raw_cycles_and_sram(spec, ws, hs)
    exact = np.where(sram <= spec.sram_usable, np.broadcast_to(cycles, (height, width)), INF)
    envelope = np.minimum.accumulate(np.minimum.accumulate(exact, axis=1), axis=0)
    for a in (exact, envelope):
        a.setflags(write=False)
    return KernelTable(exact, envelope)


def best_tiling(spec: KernelSpec, w: int, h: int, width: int, height: int) -> tuple[int, int]:
    return cycles_table(spec, width, height).best(w, h)


def sram_per_pe(spec: KernelSpec, tiling_w: int, tiling_h: int) -> int:
    return int(raw_cycles_and_sram(spec, np.array(tiling_w), np.array(tiling_h))[1])


def cycles_at(spec: KernelSpec, tiling_w: int, tiling_h: int) -> float:
    return float(raw_cycles_and_sram(spec, np.array(tiling_w), np.array(tiling_h))[0])


@lru_cache(maxsize=256)
def min_pes(spec: KernelSpec, width: int, height: int) -> int:
    """Fewest PEs of any tiling whose per-PE SRAM fits (0 when none does on this mesh)."""
    table = cycles_table(spec, width, height)
    ok = np.isfinite(table.cycles)
    if not ok.any():
        return 0
    area = np.arange(1, height + 1)[:, None] * np.arange(1, width + 1)[None, :]
    return int(area[ok].min())

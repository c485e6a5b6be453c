"""Closed-form cycle costs of the mesh's collectives and GEMM kernels, vectorised over numpy arrays.

The model is Luczynski et al., "Near-Optimal Wafer-Scale Reduce", HPDC'24:
    T = max(C, E/N) + L + (2*T_R + 1)*D,
with C the wavelets the busiest PE (or ramp) handles, E/N the wavelets on the busiest link, L the hops the
last wavelet travels and D the number of PE-to-PE levels it crosses, each costing two ramps and one cycle of
PE work (arXiv 2404.15888; its per-algorithm forms quoted below came from a summary of the paper, the
full text not being at hand). Each function is that model instantiated for one schedule, or derived from
first principles where the paper has no form for it, and then checked point by point against the
cycle-level fabric (`fabric.py`), the referee: where the two disagreed the formula here was corrected,
and its docstring says how (`fabric_sweep.py` runs the comparison).

Counting convention (the fabric's): the first wavelet enters its source ramp at cycle 0 and a kernel ends
when its last wavelet lands (a wavelet that is added to a partial sum, one cycle later). HPDC'24 counts
B cycles, not B - 1, for streaming B wavelets and charges a cycle of PE work at a plain receiver; so its
forms run 1 cycle above ours for a reduce and 2 above for a transfer or broadcast; `hpdc24_cycles`
evaluates the paper's form for comparison.

Sizes are in bytes and become wavelets of `link_bytes_per_cycle` bytes; every function takes a
`FabricParams` (default: WSE-2's 4-byte wavelet, 1-cycle hop, 2-cycle ramp, 8 FLOP/cycle).

    >>> int(transfer_cycles(64, 3))         # 16 wavelets, 3 hops: 3 + 2*2 + 15
    22
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from cgpt.backends.mesh.fabric_params import FabricParams

_DEFAULT = FabricParams()
Array = np.ndarray


def _w(nbytes: Array | int, p: FabricParams) -> Array:
    return np.asarray(p.wavelets(nbytes), dtype=np.int64)


def compute_cycles(flops: Array | float, pes: Array | int, flops_per_cycle: float) -> Array:
    """ceil(flops / (pes * flops_per_cycle)): perfectly divided work at the PE's peak rate (a roofline)."""
    return np.ceil(np.asarray(flops, dtype=np.float64) / (np.asarray(pes) * flops_per_cycle)).astype(np.int64)


def fmac_cycles(ops: Array | int, vec_len: Array | int, params: FabricParams = _DEFAULT) -> Array:
    """Issue cycles of `ops` vector FMACs of `vec_len` elements: ops * ceil(vec_len / lanes).

    The FMAC retires `lanes` = flops_per_cycle / 2 elements a cycle and a short vector wastes the rest of
    its last cycle; that, not the peak rate, is what a small block's compute costs.
    """
    lanes = params.fmac_lanes
    return np.asarray(ops, dtype=np.int64) * (-(-np.asarray(vec_len, dtype=np.int64) // lanes))


def transfer_cycles(nbytes: Array | int, hops: Array | int, params: FabricParams = _DEFAULT) -> Array:
    """One point-to-point transfer: hops*hop_latency_cycles + 2*ramp_latency_cycles + (wavelets - 1).

    HPDC'24 with D = 1, L = h, C = wavelets, less its receive cycle and with W - 1 for the stream.
    """
    w = _w(nbytes, params)
    return np.where(
        w > 0, np.asarray(hops) * params.hop_latency_cycles + 2 * params.ramp_latency_cycles + w - 1, 0
    )


def row_broadcast_cycles(nbytes: Array | int, width: Array | int, params: FabricParams = _DEFAULT) -> Array:
    """Multicast from a row's end to its `width` PEs: a transfer to the farthest, width - 1 hops away.

    Routers copy each wavelet to their ramp and onward in the same cycle, so a broadcast costs no more than
    its longest path (HPDC'24's 1-D broadcast B + P + 2*T_R, here 2 lower by the counting convention).
    """
    return np.where(np.asarray(width) > 1, transfer_cycles(nbytes, np.asarray(width) - 1, params), 0)


def broadcast_2d_cycles(
    nbytes: Array | int, w: Array | int, h: Array | int, params: FabricParams = _DEFAULT
) -> Array:
    """Multicast from a corner to a w x h block (east along the row, south down every column).

    (w + h - 2)*hop + 2*T_R + (wavelets - 1); HPDC'24: B + M + N - 2 + 2*T_R + 1.
    """
    hops = np.asarray(w) + np.asarray(h) - 2
    return np.where(hops > 0, transfer_cycles(nbytes, hops, params), 0)


def chain_reduce_cycles(nbytes: Array | int, p: Array | int, params: FabricParams = _DEFAULT) -> Array:
    """Pipelined chain reduce over p PEs: (p - 1)*(2*ramp + hop + 1) + (wavelets - 1).

    Each of the p - 1 levels costs a ramp down, one cycle to add, a ramp up and a hop (HPDC'24's
    (2*T_R + 2) per level with C = B, L = D = P - 1; the paper writes B + (2*T_R + 2)(P - 1)).
    """
    w = _w(nbytes, params)
    level = 2 * params.ramp_latency_cycles + params.hop_latency_cycles + 1
    return np.where(np.asarray(p) > 1, (np.asarray(p) - 1) * level + w - 1, 0)


def tree_reduce_cycles(nbytes: Array | int, p: Array | int, params: FabricParams = _DEFAULT) -> Array:
    """Binomial-tree reduce over p PEs in a row, every level streaming (PE i sends to i - lowbit(i)).

    Derived here, not taken from HPDC'24: a PE whose children stream to it lands its first wavelet
    f = 2*T_R + hop after its leaf child starts, and its ramp-down carries (children x wavelets); its last
    wavelet lands at A = max(f + children*W - 1, max over child c of (I_c + 2*T_R + d_c*hop)), with I_c the
    cycle child c sends its last wavelet (A_c + 1; W - 1 for a leaf) and d_c its distance. The root's sum
    is done a cycle after its A. HPDC'24's B*log2(P) + (P - 1) + (2*T_R + 1)*log2(P) adds the contention,
    distance and depth terms; the fabric overlaps them, and that sum overestimated it by up to 50% (32
    PEs, 16 wavelets).
    """
    w, pp = np.broadcast_arrays(_w(nbytes, params), np.asarray(p, dtype=np.int64))
    out = np.zeros(w.shape, dtype=np.int64)
    for size in np.unique(pp):
        sel = pp == size
        out[sel] = _tree_times(int(size), w[sel], params)[0] + 1 if size > 1 else 0
    return np.where(w > 0, out, 0)


def _tree_times(size: int, w: Array, params: FabricParams) -> tuple[Array, Array, Array]:
    """(last landing A, first send F, last send I) of the root of a lowbit tree over `size` PEs."""
    if size == 1:
        return w * 0, w * 0, w - 1
    ramp2 = 2 * params.ramp_latency_cycles
    kids = [(1 << r, min(1 << r, size - (1 << r))) for r in range(size.bit_length()) if (1 << r) < size]
    first_land, last_land, first_all = None, w * 0 - 1, w * 0
    for dist, sub in kids:
        _, f_c, i_c = _tree_times(sub, w, params)
        lat = ramp2 + dist * params.hop_latency_cycles
        first_land = f_c + lat if first_land is None else np.minimum(first_land, f_c + lat)
        last_land = np.maximum(last_land, i_c + lat)
        first_all = np.maximum(first_all, f_c + lat)
    last = np.maximum(first_land + len(kids) * w - 1, last_land)
    return last, first_all + 1, last + 1


def allreduce_cycles(
    nbytes: Array | int, p: Array | int, algorithm: str = "tree", params: FabricParams = _DEFAULT
) -> Array:
    """Reduce to a row's end, then multicast the sum back: reduce + row broadcast (as HPDC'24)."""
    reduce = chain_reduce_cycles if algorithm == "chain" else tree_reduce_cycles
    return reduce(nbytes, p, params) + row_broadcast_cycles(nbytes, p, params)


def hpdc24_cycles(
    c: Array, e_over_n: Array, l_hops: Array, depth: Array, params: FabricParams = _DEFAULT
) -> Array:
    """The paper's model itself: max(C, E/N) + L + (2*T_R + 1)*D, in cycles."""
    return np.maximum(c, e_over_n) + l_hops + (2 * params.ramp_latency_cycles + 1) * np.asarray(depth)


def transfers_cycles(flows: Sequence[tuple[int, Sequence[Hashable]]], params: FabricParams = _DEFAULT) -> int:
    """Concurrent transfers that may share links: each flow is (bytes, the links it uses, in order).

    A path starts with its source's ramp-up and ends with its destination's ramp-down (`xy_path_links`),
    so flows leaving or entering one PE contend like flows on a shared hop. On each link, a flow's first
    wavelet can arrive `pre` cycles after it starts and its wavelets land `post` cycles after they cross.
    Taking flows in order of arrival, the link is a queue: a busy period ends at
      max over its flows i of (pre_i + the wavelets of i and of every flow after it in the period) - 1,
    and the last wavelet lands the longest `post` of that period later (round-robin leaves the flows'
    last wavelets together at the end). The answer is the latest landing over links and periods; a flow
    alone gives W - 1 + its path latency, exactly the single-transfer form.
    """
    if not flows:
        return 0
    ids: dict[Hashable, int] = {}
    link, pre, post, wav = [], [], [], []
    for nbytes, path in flows:
        lat = np.full(len(path), params.hop_latency_cycles)
        lat[0] = lat[-1] = params.ramp_latency_cycles
        before = np.concatenate([[0], np.cumsum(lat)[:-1]])
        link += [ids.setdefault(x, len(ids)) for x in path]
        pre.append(before)
        post.append(int(lat.sum()) - before)
        wav += [int(params.wavelets(nbytes))] * len(path)
    link_a, pre_a, post_a, w_a = np.asarray(link), np.concatenate(pre), np.concatenate(post), np.asarray(wav)
    order = np.lexsort((pre_a, link_a))
    link_a, pre_a, post_a, w_a = link_a[order], pre_a[order], post_a[order], w_a[order]
    first = np.concatenate([[True], link_a[1:] != link_a[:-1]])
    seg = np.cumsum(first) - 1
    csum = np.cumsum(w_a)
    before_seg = (csum - w_a)[first][seg]  # wavelets of earlier links, to restart the sum per link
    c = csum - before_seg
    big = int(pre_a.max() + csum[-1] + 1)
    runmax = np.maximum.accumulate(pre_a - (c - w_a) + seg * big) - seg * big
    end = c + runmax - 1  # when each flow's last wavelet leaves the link, queued behind the ones before
    starts = first | (pre_a > np.concatenate([[0], end[:-1]]))  # arrives to an idle link: a new busy period
    lo = np.flatnonzero(starts)
    hi = np.concatenate([lo[1:], [len(end)]]) - 1
    return int(np.max(end[hi] + np.maximum.reduceat(post_a, lo)))


def xy_path_links(src: tuple[int, int], dst: tuple[int, int]) -> list[tuple]:
    """Links of the dimension-ordered (X, then Y) route from src to dst, ramps included, as hashable ids.

    ("ramp_up", x, y), then ("east"/"west"/"north"/"south", x, y) for each router output taken, then
    ("ramp_down", x, y): the names `fabric.PORTS` uses.
    """
    (x0, y0), (x1, y1) = src, dst
    sx, sy = (1 if x1 > x0 else -1), (1 if y1 > y0 else -1)
    row = [("east" if sx > 0 else "west", x, y0) for x in range(x0, x1, sx)]
    col = [("south" if sy > 0 else "north", x1, y) for y in range(y0, y1, sy)]
    return [("ramp_up", x0, y0), *row, *col, ("ramp_down", x1, y1)]


def region_transfer_cycles(
    nbytes: Array | int,
    w: Array | int,
    h: Array | int,
    dx: Array | int,
    dy: Array | int,
    params: FabricParams = _DEFAULT,
) -> Array:
    """Every PE of a w x h region sends `nbytes` to the same spot shifted by (dx, dy), XY-routed.

    Along a row, link (x -> x+1) carries the flows of the lh = min(|dx|, w) sources behind it; down a
    column, lv = min(|dy|, h). The busiest link serialises its load*W wavelets (load = max(lh, lv)); the
    wavelet that crosses it last is the one a hop from its destination, plus any hops past the region's
    far edge: load*W - 1 + 2*T_R + (1 + excess)*hop, and never less than one flow's own latency. That is
    exact on the fabric for a shift along one axis and for a one-PE-wide region (the usual producer edge).
    A block shifted diagonally passes two bottlenecks in series, and rows reach the second one staggered:
    with s = min(lh, lv) the fabric measured a further min(s*(s-1)/2, (s-1)*W) for (+dx, +dy) shifts, the
    worst orientation under its round-robin order (others are up to that much faster). That term is
    fitted to the fabric for s <= 16, not derived.
    """
    wv, w, h = _w(nbytes, params), np.asarray(w), np.asarray(h)
    adx, ady = np.abs(np.asarray(dx)), np.abs(np.asarray(dy))
    lh, lv = np.minimum(adx, w), np.minimum(ady, h)
    load = np.maximum(np.maximum(lh, lv), 1)
    s = np.minimum(lh, lv)
    stagger = np.where(s > 1, np.minimum(s * (s - 1) // 2, (s - 1) * wv), 0)
    excess = np.maximum(adx - w, 0) + np.maximum(ady - h, 0)
    serial = (
        load * wv - 1 + 2 * params.ramp_latency_cycles + (1 + excess) * params.hop_latency_cycles + stagger
    )
    alone = transfer_cycles(nbytes, adx + ady, params)
    return np.where(wv > 0, np.maximum(serial, alone), 0)


def cannon_gemm_cycles(
    m: Array | int,
    k: Array | int,
    n: Array | int,
    p: Array | int,
    elem_bytes: int = 4,
    params: FabricParams = _DEFAULT,
) -> Array:
    """C = A @ B on a p x p block by Cannon's algorithm: operands pre-skewed, no barrier between PEs.

    Each of p steps computes the local block, Tk = fmac_cycles(mb*kb, nb), while A moves one PE west and
    B one north. Both shifts leave through the PE's one ramp-up and land through its one ramp-down, and a
    PE forwards a block as soon as it holds all of it, so blocks of step s land at about s*Tc, plus the
    wrap-around's extra p - 2 hops once a block has crossed it (once per ring, not once per step). A PE
    computes step s at max(its data, its step s - 1), so the last PE finishes at
      T = max(p*Tk,  Tc + wrap + (p - 1)*Tk,  (p - 1)*Tc + wrap + Tk),   wrap = (p - 2)*hop.
    The shift period is Tc = (Wa + Wb - 2) + 2*T_R + hops*hop: a first-principles bound would be
    Wa + Wb - 1 (both blocks through one ramp); the fabric runs one cycle per step faster because the block
    a PE forwards first finishes a cycle before the pair, and the A and B chains settle into that offset.
    With it the sweep agrees within 7%; with Wa + Wb - 1 small blocks were off by up to 17%.
    """
    return _shift_gemm_cycles(m, k, n, p, elem_bytes, params, interleave=False)


def meshgemm_cycles(
    m: Array | int,
    k: Array | int,
    n: Array | int,
    p: Array | int,
    elem_bytes: int = 4,
    params: FabricParams = _DEFAULT,
) -> Array:
    """MeshGEMM (WaferLLM, OSDI'25): Cannon with logical ring index k at physical 2k, or 2(p-1-k)+1.

    Every shift is one or two hops and there is no long wrap: T = Tk + (p - 1)*max(Tk, Tc), with Tc as in
    `cannon_gemm_cycles` over two hops. Without per-step barriers that is no faster than Cannon here (the
    wrap is paid once, an extra hop every step); the interleave's win is route length and colors.
    """
    return _shift_gemm_cycles(m, k, n, p, elem_bytes, params, interleave=True)


def _shift_gemm_cycles(
    m: Array | int,
    k: Array | int,
    n: Array | int,
    p: Array | int,
    elem_bytes: int,
    params: FabricParams,
    interleave: bool,
) -> Array:
    p = np.asarray(p, dtype=np.int64)
    mb, kb, nb = np.asarray(m) // p, np.asarray(k) // p, np.asarray(n) // p
    tk = fmac_cycles(mb * kb, nb, params)
    wa, wb = _w(mb * kb * elem_bytes, params), _w(kb * nb * elem_bytes, params)
    hops = np.minimum(p - 1, 2 if interleave else 1)
    tc = (
        wa + wb - 2 + 2 * params.ramp_latency_cycles + hops * params.hop_latency_cycles + (p == 2)
    )  # a lone shift: no offset forms
    wrap = 0 if interleave else np.maximum(p - 2, 0) * params.hop_latency_cycles
    t = np.maximum(np.maximum(p * tk, tc + wrap + (p - 1) * tk), (p - 1) * tc + wrap + tk)
    return np.where(p > 1, t, tk)


def gemv_cycles(
    m: Array | int, k: Array | int, p: Array | int, elem_bytes: int = 4, params: FabricParams = _DEFAULT
) -> Array:
    """y = A @ x on a p x p block (MeshGEMV): local products, then a tree all-reduce along each row.

    fmac_cycles(kb, mb) for the local (mb x kb) @ (kb,), then `allreduce_cycles` of mb elements over p.
    """
    p = np.asarray(p, dtype=np.int64)
    mb, kb = np.asarray(m) // p, np.asarray(k) // p
    return fmac_cycles(kb, mb, params) + allreduce_cycles(mb * elem_bytes, p, "tree", params)

"""The closed-form cycle costs: exact forms pinned, HPDC'24's forms related, arrays in and out."""

import numpy as np
import pytest

from cgpt.backends.mesh import collectives as cc
from cgpt.backends.mesh.fabric_params import FabricParams
from cgpt.ir.diagnostics import TargetError

P = FabricParams()  # 4-byte wavelets, 1-cycle hops, 2-cycle ramps, 8 FLOP/cycle


@pytest.mark.parametrize(("nbytes", "hops"), [(4, 0), (4, 1), (64, 3), (1000, 7), (4096, 31)])
def test_transfer_is_hops_plus_two_ramps_plus_wavelets_minus_one(nbytes, hops):
    assert cc.transfer_cycles(nbytes, hops, P) == hops + 2 * 2 + (-(-nbytes // 4) - 1)


def test_transfer_of_nothing_costs_nothing():
    assert cc.transfer_cycles(0, 5, P) == 0


def test_latencies_come_from_the_params():
    slow = FabricParams(hop_latency_cycles=3, ramp_latency_cycles=5, link_bytes_per_cycle=8)
    assert cc.transfer_cycles(64, 4, slow) == 4 * 3 + 2 * 5 + (8 - 1)


@pytest.mark.parametrize(("wavelets", "p"), [(1, 2), (16, 4), (256, 8), (2048, 32)])
def test_chain_reduce_is_hpdc24_chain_less_its_streaming_cycle(wavelets, p):
    ours = cc.chain_reduce_cycles(4 * wavelets, p, P)
    assert ours == (p - 1) * (2 * 2 + 2) + wavelets - 1
    paper = wavelets + (2 * 2 + 2) * (p - 1)  # HPDC'24: B + (2 T_R + 2)(P - 1)
    assert ours == paper - 1
    assert ours == cc.hpdc24_cycles(wavelets, wavelets, p - 1, p - 1, P) - 1  # C = B, L = D = P - 1


@pytest.mark.parametrize(("wavelets", "m", "n"), [(1, 2, 2), (16, 4, 8), (300, 32, 32), (7, 1, 9)])
def test_broadcast_2d_is_hpdc24_2d_broadcast_less_two(wavelets, m, n):
    ours = cc.broadcast_2d_cycles(4 * wavelets, m, n, P)
    assert ours == (m + n - 2) + 2 * 2 + wavelets - 1
    assert ours == wavelets + m + n - 2 + 2 * 2 + 1 - 2  # HPDC'24: B + M + N - 2 + 2 T_R + 1


def test_row_broadcast_is_a_transfer_to_the_far_end():
    assert cc.row_broadcast_cycles(256, 16, P) == cc.transfer_cycles(256, 15, P)
    assert cc.row_broadcast_cycles(256, 1, P) == 0


def test_functions_take_arrays_of_kernels():
    nbytes = np.array([4, 64, 1024])
    p = np.array([2, 8, 32])
    assert cc.chain_reduce_cycles(nbytes, p, P).tolist() == [
        int(cc.chain_reduce_cycles(b, q, P)) for b, q in zip(nbytes, p, strict=True)
    ]
    assert cc.tree_reduce_cycles(nbytes, p, P).tolist() == [
        int(cc.tree_reduce_cycles(b, q, P)) for b, q in zip(nbytes, p, strict=True)
    ]
    assert cc.cannon_gemm_cycles(np.array([64, 256]), 64, 64, np.array([4, 8]), params=P).shape == (2,)


def test_tree_reduce_of_a_long_vector_is_bound_by_the_roots_ramp():
    # 2^K PEs: the root takes K streams of W wavelets through one ramp, started 2 T_R + 1 after the leaf
    for k in (2, 3, 5):
        assert cc.tree_reduce_cycles(4 * 4096, 2**k, P) == k * 4096 + 2 * 2 + 1


def test_tree_reduce_never_exceeds_hpdc24s_sum_of_terms():
    for p in (4, 8, 16, 32):
        for w in (1, 16, 256):
            k = int(np.log2(p))
            paper = w * k + (p - 1) + (2 * 2 + 1) * k
            assert cc.tree_reduce_cycles(4 * w, p, P) <= paper


def test_tree_beats_chain_for_short_vectors_and_chain_wins_for_long_ones():
    assert cc.tree_reduce_cycles(4, 32, P) < cc.chain_reduce_cycles(4, 32, P)
    assert cc.chain_reduce_cycles(4 * 4096, 32, P) < cc.tree_reduce_cycles(4 * 4096, 32, P)


def test_allreduce_is_reduce_then_broadcast():
    for alg, reduce in (("chain", cc.chain_reduce_cycles), ("tree", cc.tree_reduce_cycles)):
        assert cc.allreduce_cycles(512, 8, alg, P) == reduce(512, 8, P) + cc.row_broadcast_cycles(512, 8, P)


def test_compute_cycles_is_the_roofline():
    assert cc.compute_cycles(2 * 64**3, 16, 8.0) == 2 * 64**3 // (16 * 8)
    assert cc.compute_cycles(1, 1, 8.0) == 1


def test_fmac_issue_wastes_lanes_on_short_vectors():
    assert cc.fmac_cycles(10, 8, P) == 10 * 2  # 4 lanes
    assert cc.fmac_cycles(10, 5, P) == 10 * 2
    assert cc.fmac_cycles(10, 1, P) == 10


@pytest.mark.parametrize("cost", [cc.cannon_gemm_cycles, cc.meshgemm_cycles])
def test_compute_bound_gemm_on_a_k_by_k_block_is_k_steps_of_local_fmacs(cost):
    # 16x16 blocks of a 128^3 GEMM on 8x8 PEs: 256 FMACs of 16 elements (4 issue cycles) a step, 8 steps;
    # the shifts (256 + 256 wavelets) hide under the 1024 cycles of each step
    assert cost(128, 128, 128, 8, params=P) == 8 * (16 * 16 * 4)


def test_communication_bound_gemm_pays_both_shifts_through_one_ramp_each_step():
    # 1x1 blocks: 1 FMAC a step, 1 + 1 wavelets a shift
    tc = 1 + 1 - 2 + 2 * 2 + 2  # MeshGEMM: two hops
    assert cc.meshgemm_cycles(16, 16, 16, 16, params=P) == 1 + 15 * tc
    wrap = 16 - 2
    assert cc.cannon_gemm_cycles(16, 16, 16, 16, params=P) == 1 + 15 * (tc - 1) + wrap


def test_gemv_is_local_products_then_a_row_allreduce():
    local = cc.fmac_cycles(64 // 8, 128 // 8, P)
    assert cc.gemv_cycles(128, 64, 8, params=P) == local + cc.allreduce_cycles(4 * 16, 8, "tree", P)


def test_transfers_alone_cost_what_one_transfer_costs():
    path = cc.xy_path_links((0, 0), (3, 2))
    assert len(path) == 3 + 2 + 2
    assert cc.transfers_cycles([(256, path)], P) == cc.transfer_cycles(256, 5, P)


def test_transfers_sharing_a_link_serialise_their_wavelets():
    a = cc.xy_path_links((0, 0), (7, 0))
    b = cc.xy_path_links((1, 0), (7, 7))
    alone = max(cc.transfers_cycles([(1024, a)], P), cc.transfers_cycles([(1024, b)], P))
    both = cc.transfers_cycles([(1024, a), (1024, b)], P)
    assert both - alone == pytest.approx(256, abs=8)  # the second flow's 256 wavelets wait their turn


def test_transfers_that_do_not_overlap_in_time_do_not_queue():
    a = cc.xy_path_links((0, 0), (3, 0))
    b = cc.xy_path_links((1, 0), (3, 3))
    assert cc.transfers_cycles([(4, a), (4, b)], P) == cc.transfer_cycles(4, 5, P)


def test_region_shift_along_one_axis_is_the_busiest_link_serialised():
    # a 16-wide region moved 16 east: link (15 -> 16) carries all 16 flows of a row
    assert cc.region_transfer_cycles(64, 16, 16, 16, 0, P) == 16 * 16 - 1 + 2 * 2 + 1


def test_fabric_params_reject_impossible_values():
    with pytest.raises(TargetError, match="hop_latency_cycles"):
        FabricParams(hop_latency_cycles=0)
    with pytest.raises(TargetError, match="queue_depth"):
        FabricParams(queue_depth=0)
    with pytest.raises(TargetError, match="flops_per_cycle"):
        FabricParams(flops_per_cycle=1.0)


def test_fabric_params_count_wavelets():
    assert P.wavelets(10) == 3
    assert P.wavelets(np.array([0, 4, 5])).tolist() == [0, 1, 2]
    assert P.fmac_lanes == 4

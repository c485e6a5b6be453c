"""The cycle-level fabric: closed forms reproduced wavelet by wavelet, real values moved, and the
cross-validation of the analytic model (`collectives.py`) against it."""

import time

import numpy as np
import pytest

from cgpt.backends.mesh import collectives as cc
from cgpt.backends.mesh import fabric_kernels as fk
from cgpt.backends.mesh.fabric import PORTS, Fabric, FlowGroup, Program, RouteTree, multicast_xy
from cgpt.backends.mesh.fabric_params import FabricParams
from cgpt.backends.mesh.fabric_sweep import SweepPoint, small_points, sweep, sweep_table
from cgpt.ir.diagnostics import CompileError, RunError

P = FabricParams()


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize(("dst", "n"), [((1, 0), 1), ((3, 0), 8), ((0, 5), 64), ((7, 7), 33), ((2, 6), 200)])
def test_transfer_takes_hops_plus_ramps_plus_wavelets_minus_one(rng, dst, n):
    fab = Fabric(8, 8)
    values = rng.standard_normal(n)
    k = fk.transfer(fab, (0, 0), dst, values)
    r = fab.run(k.program)
    hops = dst[0] + dst[1]
    assert r.cycles == hops + 2 * 2 + n - 1 == cc.transfer_cycles(4 * n, hops, P)
    np.testing.assert_array_equal(k.read(r), values)


def test_transfer_uses_exactly_its_route(rng):
    fab = Fabric(4, 4)
    k = fk.transfer(fab, (0, 0), (2, 1), rng.standard_normal(10))
    busy = fab.run(k.program).link_busy
    used = {(x, y, PORTS[d]) for y, x, d in zip(*np.nonzero(busy), strict=True)}
    assert used == {(0, 0, "ramp_up"), (0, 0, "east"), (1, 0, "east"), (2, 0, "south"), (2, 1, "ramp_down")}
    assert busy.sum() == 5 * 10


def test_slow_links_and_ramps_follow_the_params(rng):
    params = FabricParams(hop_latency_cycles=2, ramp_latency_cycles=3, queue_depth=8)
    fab = Fabric(6, 1, params)
    k = fk.transfer(fab, (0, 0), (5, 0), rng.standard_normal(20))
    assert fab.run(k.program).cycles == 5 * 2 + 2 * 3 + 19 == cc.transfer_cycles(80, 5, params)


def test_a_shallow_queue_back_pressures_the_stream_but_loses_nothing(rng):
    values = rng.standard_normal(50)
    shallow = Fabric(5, 1, FabricParams(queue_depth=1))
    k = fk.transfer(shallow, (0, 0), (4, 0), values)
    r = shallow.run(k.program)
    assert r.cycles > cc.transfer_cycles(200, 4, P)  # one credit per queue cannot cover the ramp latency
    np.testing.assert_array_equal(k.read(r), values)


@pytest.mark.parametrize(("p", "n"), [(2, 1), (4, 16), (8, 5), (16, 64), (32, 3)])
def test_chain_reduce_matches_hpdc24_and_sums(rng, p, n):
    fab = Fabric(p, 2)
    vectors = rng.standard_normal((p, n))
    k = fk.chain_reduce(fab, vectors)
    r = fab.run(k.program)
    assert r.cycles == (p - 1) * (2 * 2 + 2) + n - 1 == cc.chain_reduce_cycles(4 * n, p, P)
    np.testing.assert_allclose(k.read(r), vectors.sum(0), rtol=1e-12)


@pytest.mark.parametrize(("p", "n"), [(2, 7), (4, 1), (5, 16), (8, 64), (16, 3), (32, 40)])
def test_tree_reduce_matches_its_closed_form_and_sums(rng, p, n):
    fab = Fabric(p, 1)
    vectors = rng.standard_normal((p, n))
    k = fk.tree_reduce(fab, vectors)
    r = fab.run(k.program)
    assert r.cycles == cc.tree_reduce_cycles(4 * n, p, P)
    np.testing.assert_allclose(k.read(r), vectors.sum(0), rtol=1e-12)


@pytest.mark.parametrize("algorithm", ["chain", "tree"])
def test_allreduce_leaves_the_sum_on_every_pe(rng, algorithm):
    fab = Fabric(8, 1)
    vectors = rng.standard_normal((8, 12))
    k = fk.allreduce(fab, vectors, algorithm)
    r = fab.run(k.program)
    assert r.cycles == cc.allreduce_cycles(48, 8, algorithm, P)
    np.testing.assert_allclose(k.read(r), np.broadcast_to(vectors.sum(0), (8, 12)), rtol=1e-12)


@pytest.mark.parametrize(("m", "n", "wavelets"), [(2, 2, 1), (4, 8, 16), (8, 3, 100), (32, 32, 9)])
def test_broadcast_2d_matches_hpdc24_and_copies(rng, m, n, wavelets):
    fab = Fabric(m, n)
    values = rng.standard_normal(wavelets)
    k = fk.broadcast_2d(fab, values, m, n)
    r = fab.run(k.program)
    assert r.cycles == (m + n - 2) + 2 * 2 + wavelets - 1 == cc.broadcast_2d_cycles(4 * wavelets, m, n, P)
    np.testing.assert_array_equal(k.read(r), np.broadcast_to(values, (n, m, wavelets)))
    assert r.link_busy[..., PORTS.index("ramp_down")].sum() == (m * n - 1) * wavelets  # one copy per PE


def test_row_broadcast_copies_along_the_row(rng):
    fab = Fabric(16, 2)
    values = rng.standard_normal(30)
    k = fk.row_broadcast(fab, values, 16, origin=(0, 1))
    r = fab.run(k.program)
    assert r.cycles == cc.row_broadcast_cycles(120, 16, P)
    np.testing.assert_array_equal(k.read(r), np.broadcast_to(values, (16, 30)))


@pytest.mark.parametrize("interleave", [False, True])
def test_compute_bound_gemm_on_a_k_by_k_block_is_exact_and_equals_numpy(rng, interleave):
    fab = Fabric(8, 8)
    a, b = rng.standard_normal((128, 64)), rng.standard_normal((64, 96))
    k = fk.cannon_gemm(fab, a, b, 8, interleave=interleave)
    r = fab.run(k.program)
    cost = cc.meshgemm_cycles if interleave else cc.cannon_gemm_cycles
    tk = 16 * 8 * -(-12 // 4)  # 16x8 @ 8x12 blocks: 128 FMACs of 12 elements
    assert r.cycles == 8 * tk == cost(128, 64, 96, 8, params=P)
    np.testing.assert_allclose(k.read(r), a @ b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("interleave", "p", "block"), [(False, 4, 1), (True, 4, 2), (False, 8, 3), (True, 16, 1)]
)
def test_communication_bound_gemm_is_within_ten_percent_and_equals_numpy(rng, interleave, p, block):
    fab = Fabric(p, p)
    s = p * block
    a, b = rng.standard_normal((s, s)), rng.standard_normal((s, s))
    k = fk.cannon_gemm(fab, a, b, p, interleave=interleave)
    r = fab.run(k.program)
    cost = cc.meshgemm_cycles if interleave else cc.cannon_gemm_cycles
    assert cost(s, s, s, p, params=P) == pytest.approx(r.cycles, rel=0.10)
    np.testing.assert_allclose(k.read(r), a @ b, rtol=1e-10, atol=1e-10)


def test_meshgemm_shifts_never_go_more_than_two_hops():
    for p in range(2, 33):
        perm = fk.mesh_permutation(p, interleave=True)
        assert sorted(perm) == list(range(p))
        assert np.max(np.abs(perm - np.roll(perm, 1))) <= 2


def test_gemv_matches_its_closed_form_and_numpy(rng):
    fab = Fabric(8, 8)
    a, x = rng.standard_normal((64, 32)), rng.standard_normal(32)
    k = fk.gemv(fab, a, x, 8)
    r = fab.run(k.program)
    assert r.cycles == cc.gemv_cycles(64, 32, 8, params=P)
    np.testing.assert_allclose(k.read(r), np.broadcast_to(a @ x, (8, 64)), rtol=1e-10)


def test_region_transfer_moves_every_pe_and_matches_the_busiest_link(rng):
    fab = Fabric(16, 8)
    values = rng.standard_normal((8, 8, 24))
    k = fk.region_transfer(fab, (0, 0), (8, 0), values)
    r = fab.run(k.program)
    np.testing.assert_array_equal(k.read(r), values)
    assert r.cycles == cc.region_transfer_cycles(96, 8, 8, 8, 0, P)
    assert r.link_busy[:, 7, PORTS.index("east")].max() == 8 * 24  # the busiest link carries all 8 flows


def test_two_transfers_sharing_a_link_are_slower_by_the_same_amount_in_both_models(rng):
    fab = Fabric(8, 8)
    a, b = ((0, 0), (7, 0)), ((1, 0), (7, 7))  # share the six east links of row 0 from x = 1
    va, vb = rng.standard_normal(128), rng.standard_normal(128)
    alone_a = fab.run(fk.transfer(fab, *a, va).program).cycles
    alone_b = fab.run(fk.transfer(fab, *b, vb).program).cycles
    k = fk.transfers(fab, [(*a, va), (*b, vb)])
    r = fab.run(k.program)
    np.testing.assert_array_equal(k.read(r), np.concatenate([va, vb]))

    def analytic(*flows):
        return cc.transfers_cycles([(512, cc.xy_path_links(s, d)) for s, d in flows], P)

    assert alone_a == analytic(a) and alone_b == analytic(b)
    fabric_delay = r.cycles - max(alone_a, alone_b)
    analytic_delay = analytic(a, b) - max(analytic(a), analytic(b))
    assert fabric_delay > 0 and analytic_delay > 0
    assert analytic_delay == pytest.approx(fabric_delay, rel=0.10)
    assert r.link_busy[0, 3, PORTS.index("east")] == 256  # both streams crossed the shared link


def test_round_robin_shares_a_link_evenly(rng):
    fab = Fabric(3, 1)
    moves = [((0, 0), (2, 0), rng.standard_normal(40)), ((1, 0), (2, 0), rng.standard_normal(40))]
    r = fab.run(fk.transfers(fab, moves).program)
    # both end at PE 2, whose ramp-down takes one wavelet a cycle: they alternate, neither waits for the other
    assert r.cycles == pytest.approx(80 + 2 * 2 + 1, abs=2)
    assert r.finished["t0"] - r.finished["t1"] in (-1, 0, 1)


def test_the_cross_validation_sweep_agrees_within_ten_percent():
    rows = sweep(small_points())
    bad = [r for r in rows if r.rel_error > 0.10 or not r.values_match]
    assert not bad, sweep_table(bad)
    assert {r.kernel for r in rows} >= {"transfer", "chain_reduce", "tree_reduce", "broadcast_2d", "gemv"}


def test_sweep_rows_name_their_point():
    (row,) = sweep([SweepPoint("chain_reduce", 4, 64)])
    assert (row.kernel, row.mesh, row.size) == ("chain_reduce", "4x4", 64)
    assert row.rel_error == 0 and row.values_match
    assert "| chain_reduce | 4x4 | 64 |" in sweep_table([row])


def test_a_32_by_32_gemm_runs_in_seconds(rng):
    fab = Fabric(32, 32)
    a, b = rng.standard_normal((128, 128)), rng.standard_normal((128, 128))
    k = fk.cannon_gemm(fab, a, b, 32, interleave=True)
    start = time.process_time()
    r = fab.run(k.program)
    assert time.process_time() - start < 5.0
    np.testing.assert_allclose(k.read(r), a @ b, rtol=1e-10, atol=1e-10)
    assert r.cycles == cc.meshgemm_cycles(128, 128, 128, 32, params=P)


def test_a_route_off_the_fabric_is_a_compile_error():
    buffers = {"x": np.zeros((4, 4, 2)), "y": np.zeros((4, 4, 2))}
    prog = Program(buffers, (FlowGroup("t", np.array([[2, 2]]), multicast_xy([(2, 0)]), 2, "x", "y"),))
    with pytest.raises(CompileError, match="routes off the 4 x 4 fabric"):
        Fabric(4, 4).run(prog)


def test_an_undeclared_buffer_is_a_compile_error():
    flow = FlowGroup("t", np.array([[0, 0]]), multicast_xy([(1, 0)]), 4, "x", "y")
    prog = Program({"x": np.zeros((1, 2, 4))}, (flow,))
    with pytest.raises(CompileError, match="buffer 'y'"):
        Fabric(2, 1).run(prog)


def test_a_buffer_of_the_wrong_shape_is_a_run_error():
    with pytest.raises(RunError, match="buffer 'x'"):
        Fabric(2, 2).run(Program({"x": np.zeros((1, 2, 4))}))


def test_a_flow_waiting_on_itself_is_reported_as_a_deadlock():
    prog = Program(
        {"x": np.zeros((1, 2, 4))},
        (FlowGroup("t", np.array([[0, 0], [1, 0]]), multicast_xy([(0, 0)]), 4, "x", "x", after=("t",)),),
    )
    with pytest.raises(CompileError, match="deadlocked"):
        Fabric(2, 1).run(prog)


def test_a_route_with_a_dead_branch_is_rejected():
    with pytest.raises(CompileError, match="delivers nowhere"):
        RouteTree(np.array([0, 1]), np.array([0, 0]), np.array([-1, 0]), np.array([True, False]))

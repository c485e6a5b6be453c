"""XY routing between rectangles: closed-form link loads, hop counts, colors, and speed on a full wafer."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from cgpt.backends.mesh.placement import Rect, TrafficEdge, place_kernels
from cgpt.backends.mesh.routing import RouteResult, route_transfers
from cgpt.backends.mesh.target import Target, preset
from cgpt.ir.diagnostics import CompileError
from tests.test_placement import gpt_chain


def _mesh(width: int, height: int, colors: int = 24) -> Target:
    return dataclasses.replace(preset("mesh-16x16"), width=width, height=height, routing_colors=colors)


def _route(rects: dict[str, Rect], edges: list[TrafficEdge], width: int = 16,
           height: int = 16) -> RouteResult:
    return route_transfers(rects, edges, _mesh(width, height))


def _loaded(a: np.ndarray) -> set[tuple[int, int, float]]:
    ys, xs = np.nonzero(a)
    return {(int(x), int(y), float(a[y, x])) for x, y in zip(xs, ys, strict=True)}


@pytest.mark.parametrize("hops", [1, 2, 7, 15])
def test_one_pe_to_one_pe_eastwards_loads_exactly_the_links_between(hops: int) -> None:
    r = _route({"a": Rect(0, 5, 1, 1), "b": Rect(hops, 5, 1, 1)}, [TrafficEdge("a", "b", 96.0)])
    assert _loaded(r.link_load_east) == {(x, 5, 96.0) for x in range(hops)}
    assert not (r.link_load_west.any() or r.link_load_south.any() or r.link_load_north.any())
    assert r.routes[0].hops == hops
    assert r.routes[0].byte_hops == r.total_byte_hops == 96.0 * hops
    assert r.max_link_bytes == r.mean_link_bytes == 96.0


def test_each_direction_uses_its_own_array() -> None:
    rects = {"a": Rect(5, 5, 1, 1), "w": Rect(2, 5, 1, 1), "n": Rect(5, 1, 1, 1), "s": Rect(5, 9, 1, 1)}
    r = _route(rects, [TrafficEdge("a", "w", 1.0), TrafficEdge("a", "n", 2.0), TrafficEdge("a", "s", 3.0)])
    # west[y, x] is the link (x+1, y) -> (x, y); north[y, x] is (x, y+1) -> (x, y).
    assert _loaded(r.link_load_west) == {(2, 5, 1.0), (3, 5, 1.0), (4, 5, 1.0)}
    assert _loaded(r.link_load_north) == {(5, y, 2.0) for y in range(1, 5)}
    assert _loaded(r.link_load_south) == {(5, y, 3.0) for y in range(5, 9)}
    assert not r.link_load_east.any()
    assert [route.hops for route in r.routes] == [3, 4, 4]


def test_diagonal_transfer_goes_x_first_then_y() -> None:
    r = _route({"a": Rect(1, 1, 1, 1), "b": Rect(4, 3, 1, 1)}, [TrafficEdge("a", "b", 8.0)])
    assert _loaded(r.link_load_east) == {(1, 1, 8.0), (2, 1, 8.0), (3, 1, 8.0)}
    assert _loaded(r.link_load_south) == {(4, 1, 8.0), (4, 2, 8.0)}
    assert r.routes[0].hops == 5
    on_path = {(1, 1), (2, 1), (3, 1), (4, 1), (4, 2), (4, 3)}
    assert {(int(x), int(y)) for y, x in zip(*np.nonzero(r.colors_per_pe), strict=True)} == on_path


def test_side_by_side_rectangles_use_one_hop_per_row() -> None:
    r = _route({"a": Rect(0, 2, 3, 4), "b": Rect(3, 2, 5, 4)}, [TrafficEdge("a", "b", 400.0)])
    assert _loaded(r.link_load_east) == {(2, y, 100.0) for y in range(2, 6)}
    assert (r.routes[0].streams, r.routes[0].hops, r.routes[0].byte_hops) == (4, 1, 400.0)


def test_stacked_rectangles_use_one_stream_per_column_routed_y_first() -> None:
    # a (4 wide) above b (2 wide): columns 0, 1 drop straight into b; columns 2, 3 miss it, go down to rows
    # spread over b's east edge (nearest column nearest the top) and then west into it.
    r = _route({"a": Rect(0, 0, 4, 2), "b": Rect(0, 2, 2, 3)}, [TrafficEdge("a", "b", 40.0)])
    assert _loaded(r.link_load_south) == {(x, 1, 10.0) for x in range(4)} | {(3, 2, 10.0)}
    assert _loaded(r.link_load_west) == {(1, 2, 10.0), (1, 3, 10.0), (2, 3, 10.0)}
    assert not (r.link_load_east.any() or r.link_load_north.any())
    assert (r.routes[0].streams, r.routes[0].hops) == (4, 4)
    assert r.total_byte_hops == 10.0 * (1 + 1 + 2 + 4)


def test_rows_that_miss_the_destination_turn_into_its_nearest_edge() -> None:
    # a is 4 rows, b 2: rows 0, 1 run straight into b; rows 2, 3 climb b's west column to its bottom row.
    r = _route({"a": Rect(0, 0, 1, 4), "b": Rect(1, 0, 1, 2)}, [TrafficEdge("a", "b", 4.0)])
    assert _loaded(r.link_load_east) == {(0, y, 1.0) for y in range(4)}
    assert _loaded(r.link_load_north) == {(1, 1, 2.0), (1, 2, 1.0)}
    assert r.total_byte_hops == 1.0 * (1 + 1 + 2 + 3)


def test_diagonal_transfer_spreads_its_streams_so_no_link_carries_two() -> None:
    # b is south-east of a: every row misses b and turns down a column of its own, the nearest row first.
    r = _route({"a": Rect(0, 0, 1, 4), "b": Rect(3, 6, 4, 2)}, [TrafficEdge("a", "b", 8.0)])
    assert r.max_link_bytes == 2.0
    assert _loaded(r.link_load_south) == {(x, y, 2.0) for x, top in ((3, 3), (4, 2), (5, 1), (6, 0))
                                           for y in range(top, 6)}
    assert r.routes[0].hops == 6 + 6  # row 0: 6 columns east, then 6 rows south
    assert r.total_byte_hops == 2.0 * (6 + 8 + 10 + 12)


def test_crossing_transfers_get_different_colors_and_disjoint_ones_share() -> None:
    rects = {"a": Rect(0, 3, 1, 1), "b": Rect(6, 3, 1, 1), "c": Rect(3, 0, 1, 1), "d": Rect(3, 6, 1, 1),
             "e": Rect(0, 10, 1, 1), "f": Rect(6, 10, 1, 1)}
    r = _route(rects, [TrafficEdge("a", "b", 1.0), TrafficEdge("c", "d", 1.0), TrafficEdge("e", "f", 1.0)])
    assert [route.color for route in r.routes] == [0, 1, 0]
    assert r.colors_per_pe[3, 3] == 2  # the crossing PE
    assert r.max_colors_per_pe == 2 and r.colors_used == 2
    r.check_colors()
    tight = route_transfers(rects, [TrafficEdge("a", "b", 1.0), TrafficEdge("c", "d", 1.0)], _mesh(16, 16, 1))
    with pytest.raises(CompileError, match=r"routes use 2 colors but the target has 1; PE \(3, 3\) carries"):
        tight.check_colors()


def test_more_than_64_colors_open_another_word() -> None:
    rects = {"src": Rect(0, 0, 1, 1)} | {f"d{i}": Rect(1 + i % 9, 1 + i // 9, 1, 1) for i in range(70)}
    edges = [TrafficEdge("src", f"d{i}", 1.0) for i in range(70)]
    r = route_transfers(rects, edges, _mesh(12, 12, 100))
    assert sorted(route.color for route in r.routes) == list(range(70))
    assert r.colors_per_pe[0, 0] == 70


def test_hottest_lists_the_busiest_links_first() -> None:
    rects = {"a": Rect(0, 0, 1, 1), "b": Rect(3, 0, 1, 1), "c": Rect(0, 1, 1, 1), "d": Rect(0, 4, 1, 1)}
    r = _route(rects, [TrafficEdge("a", "b", 5.0), TrafficEdge("c", "d", 9.0)])
    assert r.hottest(2) == [(0, 1, "south", 9.0), (0, 2, "south", 9.0)]
    assert len(r.hottest(100)) == 6
    assert r.max_link_cycles(4.0) == 9.0 / 4


def test_routing_errors_name_the_problem() -> None:
    with pytest.raises(CompileError, match="names 'z', which has no rectangle"):
        _route({"a": Rect(0, 0, 1, 1)}, [TrafficEdge("a", "z", 1.0)])
    with pytest.raises(CompileError, match="overlap"):
        _route({"a": Rect(0, 0, 2, 2), "b": Rect(1, 1, 2, 2)}, [TrafficEdge("a", "b", 1.0)])


def test_arrays_are_read_only_and_shaped_per_direction() -> None:
    r = _route({"a": Rect(0, 0, 1, 1), "b": Rect(2, 0, 1, 1)}, [TrafficEdge("a", "b", 1.0)], 5, 3)
    assert r.link_load_east.shape == r.link_load_west.shape == (3, 4)
    assert r.link_load_south.shape == r.link_load_north.shape == (2, 5)
    assert r.colors_per_pe.shape == (3, 5)
    with pytest.raises(ValueError):
        r.link_load_east[0, 0] = 1.0


def test_a_placed_111m_like_model_routes_fast_on_wse2() -> None:
    t = preset("wse2")
    kernels, edges = gpt_chain(10, 768, 3072)
    p = place_kernels(kernels, edges, t.width, t.height)
    start = time.perf_counter()
    r = route_transfers(p.rects, edges, t)
    assert time.perf_counter() - start < 3
    assert len(r.routes) == len(edges)
    assert r.total_byte_hops == pytest.approx(sum(route.byte_hops for route in r.routes))
    assert r.colors_used <= t.routing_colors
    r.check_colors()

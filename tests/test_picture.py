"""The placement picture: a valid PNG of the documented size, identical bytes on every run."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cgpt.backends.mesh.picture import LONG_SIDE_PX, MARGIN_PX, PALETTE, canvas_size, draw_placement
from cgpt.backends.mesh.placement import Rect, TrafficEdge, place_kernels
from cgpt.backends.mesh.routing import route_transfers
from cgpt.backends.mesh.target import preset
from cgpt.ir.diagnostics import CgptError
from tests.test_placement import gpt_chain

RECTS = {"embed": Rect(0, 0, 4, 16), "qkv": Rect(4, 0, 8, 8), "attn": Rect(12, 0, 4, 8),
         "fc": Rect(4, 8, 12, 8)}
EDGES = [TrafficEdge("embed", "qkv", 100.0), TrafficEdge("qkv", "attn", 300.0),
         TrafficEdge("attn", "fc", 100.0)]
GROUPS = {"embed": 0, "qkv": 1, "attn": 1, "fc": 2}


def _draw(path: Path, with_routes: bool = True) -> bytes:
    t = preset("mesh-16x16")
    routes = route_transfers(RECTS, EDGES, t) if with_routes else None
    draw_placement(path, t, RECTS, {"qkv": "h0.qkv"}, GROUPS, routes)
    return path.read_bytes()


def test_picture_is_a_png_of_the_documented_size(tmp_path: Path) -> None:
    _draw(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as image:
        image.verify()
    with Image.open(tmp_path / "p.png") as image:
        assert image.format == "PNG"
        assert image.size == canvas_size(16, 16) == (LONG_SIDE_PX + 2 * MARGIN_PX, 56 + LONG_SIDE_PX + 64)
        assert not {"date", "time", "Creation Time", "timestamp"} & set(image.info)
        # the middle of the qkv rectangle (x 4..11, y 0..7, 100 px per PE) has layer 1's colour
        assert image.convert("RGB").getpixel((MARGIN_PX + 650, 56 + 100)) == PALETTE[1]


def test_picture_bytes_are_identical_across_runs(tmp_path: Path) -> None:
    assert _draw(tmp_path / "a.png") == _draw(tmp_path / "b.png")
    assert _draw(tmp_path / "a.png") != _draw(tmp_path / "c.png", with_routes=False)


def test_wafer_picture_is_scaled_to_the_long_side(tmp_path: Path) -> None:
    t = preset("wse2")
    kernels, edges = gpt_chain(10, 768, 3072)
    p = place_kernels(kernels, edges, t.width, t.height)
    path = tmp_path / "wse2.png"
    draw_placement(path, t, p.rects, {n: n.split(".")[-1] for n in p.rects},
                   {n: int(n[1:].split(".")[0]) if n.startswith("h") else 10 for n in p.rects},
                   route_transfers(p.rects, edges, t))
    with Image.open(path) as image:
        assert image.size == canvas_size(750, 994) == (round(750 * LONG_SIDE_PX / 994) + 2 * MARGIN_PX,
                                                        56 + LONG_SIDE_PX + 64)


def test_missing_output_directory_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(CgptError, match="does not exist"):
        _draw(tmp_path / "absent" / "p.png")
    assert not (tmp_path / "absent").exists()

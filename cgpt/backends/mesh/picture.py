"""A PNG of a placement: the mesh to scale, rectangles coloured by layer, the busiest links as a heat overlay.

    draw_placement("placement.png", target, placement.rects, labels={"h0.qkv": "qkv"}, groups={"h0.qkv": 0},
                   route_result=routes)

The picture depends only on its inputs (no timestamps or other metadata), so reruns are byte-identical.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from PIL import Image, ImageDraw, ImageFont

from cgpt.backends.mesh.placement import Rect
from cgpt.backends.mesh.routing import RouteResult
from cgpt.backends.mesh.target import Target
from cgpt.ir.files import atomic_path

LONG_SIDE_PX = 1600  # the mesh's longer side, in pixels
MARGIN_PX = 20
TITLE_PX = 56
LEGEND_PX = 64
HOT_FRACTION = 0.01  # overlay the busiest 1% of the links that carry traffic

# Tableau 10 plus two light tints: qualitative, distinguishable, and readable under dark text.
PALETTE = ((78, 121, 167), (242, 142, 43), (225, 87, 89), (118, 183, 178), (89, 161, 79), (237, 201, 72),
           (176, 122, 161), (255, 157, 167), (156, 117, 95), (186, 176, 172), (160, 203, 232),
           (255, 190, 125))
_BACKGROUND = (250, 250, 250)
_MESH = (224, 224, 224)
_INK = (30, 30, 30)


def canvas_size(width: int, height: int) -> tuple[int, int]:
    """Pixel size of the picture of a `width` x `height` mesh."""
    scale = LONG_SIDE_PX / max(width, height)
    return (round(width * scale) + 2 * MARGIN_PX, TITLE_PX + round(height * scale) + LEGEND_PX)


def draw_placement(
    path: str | os.PathLike[str],
    target: Target,
    rects: Mapping[str, Rect],
    labels: Mapping[str, str],
    groups: Mapping[str, int],
    route_result: RouteResult | None = None,
    title: str | None = None,
) -> None:
    """Write the placement picture to `path` (PNG, atomically); unlabelled rects show their name."""
    scale = LONG_SIDE_PX / max(target.width, target.height)
    size = canvas_size(target.width, target.height)
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    small, big = ImageFont.load_default(size=12), ImageFont.load_default(size=18)
    label_fonts = [ImageFont.load_default(size=n) for n in (22, 16, 12)]

    def box(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        return (MARGIN_PX + x * scale, TITLE_PX + y * scale, MARGIN_PX + (x + w) * scale - 1,
                TITLE_PX + (y + h) * scale - 1)

    draw.rectangle(box(0, 0, target.width, target.height), fill=_MESH)
    for name in sorted(rects, key=lambda n: (rects[n].y, rects[n].x, n)):
        r = rects[name]
        colour = PALETTE[groups.get(name, 0) % len(PALETTE)]
        x0, y0, x1, y1 = box(r.x, r.y, r.w, r.h)
        thin = min(x1 - x0, y1 - y0) < 4
        draw.rectangle((x0, y0, x1, y1), fill=colour, outline=None if thin else _shade(colour, 0.6))
        text = labels.get(name, name)
        for font in label_fonts:  # the largest size that fits; none if even the smallest does not
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            if right - left + 4 <= x1 - x0 and bottom - top + 4 <= y1 - y0:
                draw.text(((x0 + x1) / 2, (y0 + y1) / 2), text, fill=_INK, font=font, anchor="mm")
                break
    heat_note = ""
    if route_result is not None:
        heat_note = _draw_heat(image, route_result, scale)
    used = sum(r.area for r in rects.values())
    heading = title or f"{target.name}: {target.width} x {target.height} PEs, {len(rects)} rectangles, " \
                       f"{100 * used / target.pes:.1f}% of PEs placed"
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN_PX, 8), heading, fill=_INK, font=big)
    if heat_note:
        draw.text((MARGIN_PX, 32), heat_note, fill=_INK, font=small)
    _draw_legend(draw, sorted({groups.get(n, 0) for n in rects}), size, small)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _draw_heat(image: Image.Image, result: RouteResult, scale: float) -> str:
    """Overlay the busiest links, yellow to red by load, as segments between PE centres; returns the note."""
    loads = (result.link_load_east, result.link_load_west, result.link_load_south, result.link_load_north)
    carrying = int(sum((a > 0).sum() for a in loads))
    if carrying == 0:
        return "no link carries traffic"
    hot = result.hottest(max(1, math.ceil(HOT_FRACTION * carrying)))
    peak = hot[0][3]
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    step = {"east": (1, 0), "west": (1, 0), "south": (0, 1), "north": (0, 1)}  # (x, y) joins its +1 neighbour
    thickness = max(2, round(scale * 0.3))
    for x, y, direction, nbytes in reversed(hot):  # hottest drawn last, on top
        dx, dy = step[direction]
        frac = nbytes / peak
        colour = (255, round(220 * (1 - frac)), 0, round(150 + 105 * frac))
        a = (MARGIN_PX + (x + 0.5) * scale, TITLE_PX + (y + 0.5) * scale)
        b = (a[0] + dx * scale, a[1] + dy * scale)
        draw.line((a, b), fill=colour, width=thickness)
    image.paste(Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB"))
    return (f"overlay: busiest {len(hot)} of {carrying} loaded links, yellow to red, "
            f"peak {peak:,.0f} bytes/sample")


def _draw_legend(draw: ImageDraw.ImageDraw, groups: list[int], size: tuple[int, int],
                 font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> None:
    """Swatches for the layers, left to right in up to two lines; what does not fit is counted at the end."""
    note_room = int(draw.textlength("... and 9999 more layers", font=font)) + 16
    x, y = MARGIN_PX, size[1] - LEGEND_PX + 10
    for shown, g in enumerate(groups):
        text = f"layer {g}"
        width = 16 + int(draw.textlength(text, font=font)) + 14
        last_line = y > size[1] - LEGEND_PX + 10
        if x + width > size[0] - MARGIN_PX - (note_room if last_line else 0):
            if last_line:
                draw.text((x, y + 6), f"... and {len(groups) - shown} more layers", fill=_INK, font=font,
                          anchor="lm")
                return
            x, y = MARGIN_PX, y + 24
        draw.rectangle((x, y, x + 11, y + 11), fill=PALETTE[g % len(PALETTE)], outline=_INK)
        draw.text((x + 16, y + 6), text, fill=_INK, font=font, anchor="lm")
        x += width


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(c * factor) for c in colour)  # type: ignore[return-value]


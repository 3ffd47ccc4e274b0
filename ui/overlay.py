"""Highlights drawn over a page image: the boxes of the query's matched terms (or a cited quote), in 0-1 of the
page, as translucent marker strokes with a thin outline, so the words stay readable under them."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

FILL = (255, 214, 0, 96)  # marker yellow, translucent
OUTLINE = (230, 120, 0, 255)


def draw_highlights(image_path: str | Path, highlights: list[dict]) -> Image.Image:
    """The page with each ``{box: [x0, y0, x1, y1]}`` of `highlights` marked."""
    with Image.open(image_path) as im:
        page = im.convert("RGBA")
    layer = Image.new("RGBA", page.size, (0, 0, 0, 0))
    pen = ImageDraw.Draw(layer)
    w, h = page.size
    for hl in highlights:
        x0, y0, x1, y1 = hl["box"]
        pad = max(1, round(0.002 * h))  # the box hugs the glyphs: a hair of margin reads as a marker stroke
        pen.rectangle((x0 * w - pad, y0 * h - pad, x1 * w + pad, y1 * h + pad), fill=FILL, outline=OUTLINE, width=1)
    return Image.alpha_composite(page, layer).convert("RGB")

"""Page images the Qwen-VL image processor accepts: strips and receipts padded to a ratio it takes.

Kept apart from `processing` so the data readers can use it without importing transformers.
"""

from __future__ import annotations

import math

from PIL import Image

# Qwen-VL's image processor refuses a width:height beyond 1:200; stay clear of it.
MAX_ASPECT = 150


def padded_size(w: int, h: int, max_aspect: float = MAX_ASPECT) -> tuple[int, int]:
    """The size `pad_to_aspect` gives a ``w`` x ``h`` image."""
    if max(w, h) <= max_aspect * min(w, h):
        return w, h
    return (math.ceil(h / max_aspect), h) if h > w else (w, math.ceil(w / max_aspect))


def pad_to_aspect(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """Pad (white, centred) an image longer than ``max_aspect``:1 so the image processor takes it: a receipt or
    a strip page then embeds as itself on a wider sheet, instead of failing its whole batch."""
    w, h = image.size
    new = padded_size(w, h, max_aspect)
    if new == (w, h):
        return image
    sheet = Image.new(image.mode, new, "white")
    sheet.paste(image, ((new[0] - w) // 2, (new[1] - h) // 2))
    return sheet

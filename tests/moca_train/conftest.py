from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

SMALL_PIXELS = dict(min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny randomly initialised encoder checkpoint at a small image resolution."""
    from moca_train.presets import init_checkpoint

    return init_checkpoint("tiny", tmp_path_factory.mktemp("tiny"), seed=0, **SMALL_PIXELS)


@pytest.fixture(scope="session")
def page_images() -> list[Image.Image]:
    """Page-like images of different sizes (so batches need padding)."""
    images = []
    for i, (w, h) in enumerate([(300, 420), (420, 300), (256, 256), (500, 700)]):
        im = Image.new("RGB", (w, h), "white")
        draw = ImageDraw.Draw(im)
        for line in range(6):
            draw.text((10, 10 + 20 * line), f"page {i} line {line} revenue {i * 7 + line}", fill="black")
        draw.rectangle((20 + 10 * i, h - 80, 120 + 10 * i, h - 20), fill=(200, 40 * i, 90))
        images.append(im)
    return images

"""A hit's page image as a file path, through `indexing.page_images` (rendered on demand, cached)."""

from __future__ import annotations

from pathlib import Path

from indexing.page_images import PageUnavailable, page_images
from indexing.store.points import Hit


def hit_image(index_dir: str | Path, hit: Hit, thumbnail: bool = False, cache_mb: int = 1024) -> tuple[str | None, str]:
    """(path, "") for the page's full image (or thumbnail), or (None, one-line reason) when none can be given."""
    images = page_images(Path(index_dir), cache_mb << 20)
    try:
        path = (images.thumbnail if thumbnail else images.full)(hit.doc_hash, hit.page, hit.image_path)
    except (PageUnavailable, ValueError) as e:
        return None, str(e)
    return str(path), ""

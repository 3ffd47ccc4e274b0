"""Page thumbnails: one small WebP per page (`THUMBNAIL_SIDE` px on the long side), in one SQLite file.

The default ``page_store = "thumbnail"`` keeps these instead of full page images: ~7 KiB a page against
~185 KiB (benchmarks/render_floor.py), enough for the search gallery, and the image still shown when the source
file has changed or vanished. Full-size pages are rendered from the source on demand (`indexing.page_images`).

One SQLite file for all of them (`indexing.page_blobs`), written before the manifest counts those pages.
"""

from __future__ import annotations

import io

from PIL import Image

from .page_blobs import PageBlobStore

THUMBNAILS_NAME = "thumbnails.sqlite"
THUMBNAIL_QUALITY = 80


def encode_thumbnail(image: Image.Image) -> bytes:
    """WebP bytes of an (already small) page image; libwebp effort 0, as for full pages."""
    buf = io.BytesIO()
    (image if image.mode in ("RGB", "L") else image.convert("RGB")).save(
        buf, format="WEBP", quality=THUMBNAIL_QUALITY, method=0)
    return buf.getvalue()


class ThumbnailStore(PageBlobStore):
    """Thumbnails of an index folder; `ThumbnailStore(dir, create=False)` reads without creating the file."""

    file_name = THUMBNAILS_NAME
    table = "thumbnails"
    column = "webp"

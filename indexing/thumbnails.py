"""Page thumbnails: one small WebP per page (`THUMBNAIL_SIDE` px on the long side), in one SQLite file.

The default ``page_store = "thumbnail"`` keeps these instead of full page images: ~7 KiB a page against
~185 KiB (benchmarks/render_floor.py), enough for the search gallery, and the image still shown when the source
file has changed or vanished. Full-size pages are rendered from the source on demand (`indexing.page_images`).

One file, not one file per page: 10 M tiny files cost more in inodes and fsyncs than their bytes. Rows are
keyed by (document hash, page), written in one transaction per batch by the indexer before the manifest counts
those pages, and deleted with the document. WAL mode: readers (the UI, `docrag search`) never wait on a writer.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

THUMBNAILS_NAME = "thumbnails.sqlite"
THUMBNAIL_QUALITY = 80

_SCHEMA = """
CREATE TABLE IF NOT EXISTS thumbnails (
    doc_hash TEXT NOT NULL,
    page INTEGER NOT NULL,
    webp BLOB NOT NULL,
    PRIMARY KEY (doc_hash, page)
) WITHOUT ROWID;
"""


def encode_thumbnail(image: Image.Image) -> bytes:
    """WebP bytes of an (already small) page image; libwebp effort 0, as for full pages."""
    buf = io.BytesIO()
    (image if image.mode in ("RGB", "L") else image.convert("RGB")).save(
        buf, format="WEBP", quality=THUMBNAIL_QUALITY, method=0)
    return buf.getvalue()


class ThumbnailStore:
    """Thumbnails of an index folder; `ThumbnailStore(dir, create=False)` reads without creating the file."""

    def __init__(self, index_dir: str | Path, create: bool = True) -> None:
        self.path = Path(index_dir) / THUMBNAILS_NAME
        self._db: sqlite3.Connection | None = None
        if create or self.path.exists():
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def put(self, doc_hash: str, rows: Iterable[tuple[int, bytes]]) -> None:
        """Store a batch of (page, WebP bytes) in one transaction."""
        rows = [(doc_hash, int(page), sqlite3.Binary(data)) for page, data in rows]
        if not rows or self._db is None:
            return
        with self._db:  # one transaction: the whole batch or none of it
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO thumbnails VALUES (?, ?, ?)", rows)

    def get(self, doc_hash: str, page: int) -> bytes | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT webp FROM thumbnails WHERE doc_hash = ? AND page = ?",
                               (doc_hash, int(page))).fetchone()
        return bytes(row[0]) if row else None

    def delete_document(self, doc_hash: str) -> int:
        if self._db is None:
            return 0
        return self._db.execute("DELETE FROM thumbnails WHERE doc_hash = ?", (doc_hash,)).rowcount

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM thumbnails").fetchone()[0] if self._db else 0

    def bytes_used(self) -> int:
        """Size of the file on disk (the WAL included), for `docrag status`."""
        return sum(p.stat().st_size for p in (self.path, self.path.with_name(self.path.name + "-wal"))
                   if p.exists())

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> ThumbnailStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

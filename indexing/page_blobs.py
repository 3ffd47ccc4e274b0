"""One small blob per page, keyed by (document hash, page), in one SQLite file under the index folder.

What the thumbnails (`indexing.thumbnails`) and the word boxes (`indexing.words`) share. One file, not one file
per page: 10 M tiny files cost more in inodes and fsyncs than their bytes. Rows are written in one transaction
per batch by the indexer before the manifest counts those pages, and deleted with the document. WAL mode:
readers (the UI, `docrag search`) never wait on a writer. A rowid table, not WITHOUT ROWID: rows of 1-10 KB
overflow a WITHOUT ROWID table's pages (measured: word boxes 3.6 KiB a page on disk against 1.7, thumbnails
8.9 against 8.1; files made before keep their layout, read the same way).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Self


class PageBlobStore:
    """Blobs of an index folder; ``create=False`` reads without creating the file (a missing file reads empty)."""

    file_name = ""  # set by each kind
    table = ""
    column = "data"  # the thumbnails' table (older than this module) calls it "webp"

    def __init__(self, index_dir: str | Path, create: bool = True) -> None:
        self.path = Path(index_dir) / self.file_name
        self._db: sqlite3.Connection | None = None
        if create or self.path.exists():
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (doc_hash TEXT NOT NULL, page INTEGER NOT "
                             f"NULL, {self.column} BLOB NOT NULL, PRIMARY KEY (doc_hash, page))")

    def put(self, doc_hash: str, rows: Iterable[tuple[int, bytes]]) -> None:
        """Store a batch of (page, bytes) in one transaction."""
        rows = [(doc_hash, int(page), sqlite3.Binary(data)) for page, data in rows]
        if not rows or self._db is None:
            return
        with self._db:  # one transaction: the whole batch or none of it
            self._db.execute("BEGIN")
            self._db.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?, ?)", rows)

    def get(self, doc_hash: str, page: int) -> bytes | None:
        if self._db is None:
            return None
        row = self._db.execute(f"SELECT {self.column} FROM {self.table} WHERE doc_hash = ? AND page = ?",
                               (doc_hash, int(page))).fetchone()
        return bytes(row[0]) if row else None

    def pages(self, doc_hash: str) -> set[int]:
        """The pages of a document that have a row."""
        if self._db is None:
            return set()
        return {r[0] for r in self._db.execute(f"SELECT page FROM {self.table} WHERE doc_hash = ?", (doc_hash,))}

    def delete_document(self, doc_hash: str) -> int:
        if self._db is None:
            return 0
        return self._db.execute(f"DELETE FROM {self.table} WHERE doc_hash = ?", (doc_hash,)).rowcount

    def count(self) -> int:
        return self._db.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0] if self._db else 0

    def bytes_used(self) -> int:
        """Size of the file on disk (the WAL included), for `docrag status`."""
        return sum(p.stat().st_size for p in (self.path, self.path.with_name(self.path.name + "-wal"))
                   if p.exists())

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

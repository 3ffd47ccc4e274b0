"""The index's manifest: which file (path, content hash) is indexed, how far, and with what.

A document is marked ``complete`` only after all its pages are in the store, so an interrupted
run (Ctrl-C, kill -9) is finished by the next one. SQLite in WAL mode: every write is one
transaction, atomic under a crash.

Paths: the manifest is the one place that knows which paths a content hash has *now* (two copies share one
hash; a rename with ``--prune`` swaps the path). Store payloads keep the path a page was first stored under,
so readers resolve hits and ``doc=`` filters through `paths_by_hash` / `hashes_matching` at query time
(`indexing.resolve`), which cannot drift from the files on disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.sqlite"
PENDING, COMPLETE = "pending", "complete"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    path TEXT PRIMARY KEY,      -- absolute path as scanned
    sha256 TEXT NOT NULL,       -- content hash: the document's identity in the store
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL,       -- pending | complete
    pages INTEGER NOT NULL DEFAULT 0,       -- pages written to the store so far
    next_page INTEGER NOT NULL DEFAULT 1,   -- where an interrupted run resumes
    total_pages INTEGER,                    -- pages in the file (NULL until known)
    visual_pages INTEGER NOT NULL DEFAULT 0,
    title TEXT NOT NULL DEFAULT '',
    encoder TEXT,               -- encoder that made its visual vectors (NULL: text only)
    replaces TEXT,              -- hash of the file's previous content, removed once this one is complete
    indexed_at TEXT
);
CREATE INDEX IF NOT EXISTS documents_sha256 ON documents(sha256);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class NoIndex(LookupError):
    """The folder holds no index (no manifest): reading it must say so, not create one."""

    def __init__(self, index_dir: Path | str) -> None:
        self.index_dir = Path(index_dir)
        super().__init__(f"no index in {self.index_dir} (run `docrag index PATH --index-dir {self.index_dir}` first)")

    def __str__(self) -> str:
        return self.args[0]


@dataclass
class DocumentRecord:
    path: str
    sha256: str
    size: int
    mtime_ns: int
    status: str
    pages: int
    next_page: int
    total_pages: int | None
    visual_pages: int
    title: str
    encoder: str | None
    replaces: str | None
    indexed_at: str | None


class Manifest:
    def __init__(self, index_dir: Path | str) -> None:
        self.path = Path(index_dir) / MANIFEST_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Short transactions and a busy timeout: a reader in another process never sees a half write.
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def existing(cls, index_dir: Path | str) -> Manifest:
        """The manifest of an index that exists; raises `NoIndex` (creating nothing) otherwise."""
        if not (Path(index_dir) / MANIFEST_NAME).is_file():
            raise NoIndex(index_dir)
        return cls(index_dir)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- reads ------------------------------------------------------------------------------
    def get(self, path: str) -> DocumentRecord | None:
        row = self._db.execute("SELECT * FROM documents WHERE path = ?", (path,)).fetchone()
        return DocumentRecord(**dict(row)) if row else None

    def documents(self, status: str | None = None) -> Iterator[DocumentRecord]:
        sql, args = "SELECT * FROM documents", ()
        if status:
            sql, args = sql + " WHERE status = ?", (status,)
        for row in self._db.execute(sql + " ORDER BY path", args).fetchall():
            yield DocumentRecord(**dict(row))

    def complete_with_hash(self, sha256: str) -> DocumentRecord | None:
        row = self._db.execute(
            "SELECT * FROM documents WHERE sha256 = ? AND status = ? LIMIT 1", (sha256, COMPLETE)
        ).fetchone()
        return DocumentRecord(**dict(row)) if row else None

    def hash_in_use(self, sha256: str, except_path: str | None = None) -> bool:
        """Whether any record (or a pending replacement) still needs this content's points."""
        row = self._db.execute(
            "SELECT 1 FROM documents WHERE sha256 = ? AND path IS NOT ? LIMIT 1", (sha256, except_path)
        ).fetchone()
        return row is not None

    def has_visual(self) -> bool:
        """Whether any complete document has pages with visual vectors (one indexed lookup, per search)."""
        row = self._db.execute(
            "SELECT 1 FROM documents WHERE status = ? AND visual_pages > 0 LIMIT 1", (COMPLETE,)
        ).fetchone()
        return row is not None

    def paths_by_hash(self, hashes: list[str] | set[str]) -> dict[str, list[str]]:
        """hash -> the paths whose pages it is now: complete records first, then pending ones, then paths whose
        pending new version replaces it (their old pages stay searchable until the new ones are in)."""
        out: dict[str, list[str]] = {}
        wanted = sorted(set(hashes))
        for i in range(0, len(wanted), 500):  # SQLite caps the number of ? parameters
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT sha256 AS h, path, status = ? AS done, 0 AS old FROM documents WHERE sha256 IN ({marks})"
                f" UNION ALL SELECT replaces, path, 0, 1 FROM documents WHERE replaces IN ({marks})"
                " ORDER BY h, old, done DESC, path", (COMPLETE, *chunk, *chunk)).fetchall()
            for row in rows:
                paths = out.setdefault(row["h"], [])
                if row["path"] not in paths:
                    paths.append(row["path"])
        return out

    def hashes_matching(self, doc_filter: str) -> list[str]:
        """Content hashes of documents whose path (any of its copies) contains `doc_filter`, or whose hash is it."""
        rows = self._db.execute(
            "SELECT sha256 FROM documents WHERE instr(path, ?) > 0 OR sha256 = ?"
            " UNION SELECT replaces FROM documents WHERE replaces IS NOT NULL AND instr(path, ?) > 0",
            (doc_filter, doc_filter, doc_filter)).fetchall()
        return sorted(r[0] for r in rows)

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # ---- writes -----------------------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def start(self, path: str, sha256: str, size: int, mtime_ns: int, title: str, replaces: str | None) -> None:
        """Record a file about to be (re)indexed; keeps a resumable record's progress for the same hash."""
        old = self.get(path)
        if old is not None and old.sha256 == sha256 and old.status == PENDING:
            self._db.execute("UPDATE documents SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))
            return
        self._db.execute(
            "INSERT OR REPLACE INTO documents(path, sha256, size, mtime_ns, status, pages, next_page, total_pages,"
            " visual_pages, title, encoder, replaces, indexed_at)"
            " VALUES (?, ?, ?, ?, ?, 0, 1, NULL, 0, ?, NULL, ?, NULL)",
            (path, sha256, size, mtime_ns, PENDING, title, replaces),
        )

    def progress(
        self, path: str, *, pages: int, next_page: int, visual_pages: int, total_pages: int, encoder: str | None
    ) -> None:
        self._db.execute(
            "UPDATE documents SET pages = ?, next_page = ?, visual_pages = ?, total_pages = ?,"
            " encoder = COALESCE(?, encoder) WHERE path = ?",
            (pages, next_page, visual_pages, total_pages, encoder, path),
        )

    def complete(self, path: str, pages: int, visual_pages: int, indexed_at: str) -> None:
        self._db.execute(
            "UPDATE documents SET status = ?, pages = ?, visual_pages = ?, replaces = NULL, indexed_at = ?"
            " WHERE path = ?",
            (COMPLETE, pages, visual_pages, indexed_at, path),
        )

    def alias(self, path: str, sha256: str, size: int, mtime_ns: int, source: DocumentRecord) -> None:
        """A second path with content already indexed: shares the stored pages."""
        self._db.execute(
            "INSERT OR REPLACE INTO documents(path, sha256, size, mtime_ns, status, pages, next_page, total_pages,"
            " visual_pages, title, encoder, replaces, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            (path, sha256, size, mtime_ns, COMPLETE, source.pages, source.next_page, source.total_pages,
             source.visual_pages,
             source.title, source.encoder, source.indexed_at),
        )

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        self._db.execute("UPDATE documents SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path))

    def set_visual(self, sha256: str, visual_pages: int, encoder: str) -> None:
        self._db.execute(
            "UPDATE documents SET visual_pages = ?, encoder = ? WHERE sha256 = ?", (visual_pages, encoder, sha256)
        )

    def remove(self, path: str) -> None:
        self._db.execute("DELETE FROM documents WHERE path = ?", (path,))

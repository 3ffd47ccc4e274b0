"""The page-image store: one encoded image per rendered page, under the index folder.

Layout: ``<root>/pages/<hash[:2]>/<hash>/<page:05d>.<fmt>``, keyed by the document's content hash so that
a renamed file keeps its images and a changed file gets new ones. Every write goes to a temporary file in
the same folder and is renamed into place, so a process killed at any moment leaves either the whole image
or none (plus at most a ``.tmp`` file that `remove_stale_tmp` sweeps).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path, PurePosixPath

from PIL import Image

FORMATS = {"webp": "WEBP", "png": "PNG"}
PAGES_DIR = "pages"
TMP_SUFFIX = ".tmp"
# libwebp effort 0-6. Measured on 144-dpi text pages: method 2 is within 3% of method 4's size at half the
# encode time (~60 vs ~120 ms a page), and encoding, not rendering (~5 ms), is what a page costs here.
WEBP_METHOD = 2
_HASH_RE = re.compile(r"^[0-9a-f]{8,128}$")


def _check_hash(doc_hash: str) -> str:
    if not isinstance(doc_hash, str) or not _HASH_RE.match(doc_hash):
        # The hash becomes a folder name: anything but lowercase hex could escape the store (../) or collide.
        raise ValueError(f"document hash must be 8-128 lowercase hex characters, got {doc_hash!r}")
    return doc_hash


class PageStore:
    """Encoded page images on disk, addressed by (document hash, page number)."""

    def __init__(self, root: str | Path, fmt: str = "webp", quality: int = 85) -> None:
        fmt = fmt.lower().lstrip(".")
        if fmt not in FORMATS:
            raise ValueError(f"unknown page image format {fmt!r}: choose one of {', '.join(FORMATS)}")
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {quality}")
        self.root = Path(root)
        self.fmt = fmt
        self.quality = quality

    @property
    def pages_dir(self) -> Path:
        return self.root / PAGES_DIR

    def _doc_dir_rel(self, doc_hash: str) -> PurePosixPath:
        h = _check_hash(doc_hash)
        return PurePosixPath(PAGES_DIR, h[:2], h)

    def relpath(self, doc_hash: str, page: int) -> str:
        """Where page `page` (1-based) of `doc_hash` lives, relative to root (what payloads store)."""
        if not isinstance(page, int) or page < 1:
            raise ValueError(f"page numbers start at 1, got {page!r}")
        return str(self._doc_dir_rel(doc_hash) / f"{page:05d}.{self.fmt}")

    def save(self, doc_hash: str, page: int, image: Image.Image) -> str:
        """Encode and write atomically; returns the path relative to root."""
        rel = self.relpath(doc_hash, page)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        # os.open with 0o666 (not mkstemp's 0o600) so the final file gets the usual umask permissions.
        tmp = target.parent / f".{target.stem}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                if self.fmt == "webp":
                    image.save(f, format="WEBP", quality=self.quality, method=WEBP_METHOD)
                else:
                    image.save(f, format="PNG", compress_level=6)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return rel

    def path(self, rel: str | Path) -> Path:
        """Absolute path of a stored relative path; refuses paths that leave the store."""
        p = PurePosixPath(str(rel).replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] != PAGES_DIR:
            raise ValueError(f"not a page-store path: {rel!r}")
        return self.root.joinpath(*p.parts)

    def exists(self, doc_hash: str, page: int) -> bool:
        """Whether this page is stored in this store's format (a resumed run skips it)."""
        return (self.root / self.relpath(doc_hash, page)).is_file()

    def pages(self, doc_hash: str) -> list[int]:
        """Page numbers stored for a document, in this store's format, sorted."""
        folder = self.root / self._doc_dir_rel(doc_hash)
        if not folder.is_dir():
            return []
        out = []
        for p in folder.iterdir():
            if p.suffix == f".{self.fmt}" and p.stem.isdigit():
                out.append(int(p.stem))
        return sorted(out)

    def delete_document(self, doc_hash: str) -> int:
        """Remove all of a document's images (any format, stray tmp files too); returns files removed."""
        folder = self.root / self._doc_dir_rel(doc_hash)
        if not folder.is_dir():
            return 0
        removed = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.endswith(TMP_SUFFIX))
        shutil.rmtree(folder)
        try:
            folder.parent.rmdir()  # the <hash[:2]> bucket, when it was the last document in it
        except OSError:
            pass
        return removed

    def document_hashes(self) -> set[str]:
        """Every document hash with a folder in the store (compare with the manifest to find orphans)."""
        out: set[str] = set()
        if not self.pages_dir.is_dir():
            return out
        for bucket in self.pages_dir.iterdir():
            if not bucket.is_dir() or len(bucket.name) != 2:
                continue
            for d in bucket.iterdir():
                if d.is_dir() and _HASH_RE.match(d.name) and d.name[:2] == bucket.name:
                    out.add(d.name)
        return out

    def bytes_used(self) -> int:
        """Total size of the files under pages/ (for `docrag status`)."""
        total = 0
        for dirpath, _dirs, files in os.walk(self.pages_dir):
            for name in files:
                try:
                    total += os.stat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass  # deleted by a concurrent cleanup
        return total

    def remove_stale_tmp(self) -> int:
        """Delete temporary files left by a killed writer; returns how many. Call when no writer runs."""
        removed = 0
        for dirpath, _dirs, files in os.walk(self.pages_dir):
            for name in files:
                if name.startswith(".") and name.endswith(TMP_SUFFIX):
                    try:
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
                    except OSError:
                        pass
        return removed

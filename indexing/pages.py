"""The page-image store: one encoded image per rendered page, under the index folder.

Layout: ``<root>/pages/<hash[:2]>/<hash>/<page:05d>.<ext>``, keyed by the document's content hash so that
a renamed file keeps its images and a changed file gets new ones. Every write goes to a temporary file in
the same folder, is fsynced and renamed into place, so a process killed at any moment leaves either the
whole image or none (plus at most a ``.tmp`` file that `remove_stale_tmp` sweeps); `sync_folders` then makes
the renames durable, and the indexer calls it before the manifest records those pages.

Formats: WebP (default, libwebp ``method`` 0: the fastest effort), JPEG (Pillow's libjpeg, about 6x faster
than WebP for ~1.5x the bytes) and PNG (lossless, large). Used with ``page_store = "full"``; the render workers
(`indexing.extract`) encode and save in parallel processes.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from PIL import Image

FORMATS = {"webp": "WEBP", "jpeg": "JPEG", "png": "PNG"}
EXTENSIONS = {"webp": "webp", "jpeg": "jpg", "png": "png"}
_ALIASES = {"jpg": "jpeg"}
PAGES_DIR = "pages"
TMP_SUFFIX = ".tmp"
# libwebp effort 0-6. Measured on 144-dpi text pages (2 cores): method 0 ~27 ms a page, method 2 ~40 ms for a
# file ~20% smaller, method 4 ~120 ms. Encoding, not rendering (~5 ms), is what a page costs, so 0 is the default.
WEBP_METHOD = 0
_HASH_RE = re.compile(r"^[0-9a-f]{8,128}$")


# The largest side each format can hold (WebP: 14-bit sizes; JPEG: 16-bit, less a margin libjpeg wants).
MAX_SIDE = {"webp": 16383, "jpeg": 65500}


def _fit_side(image: Image.Image, limit: int | None) -> Image.Image:
    """A page longer than its format allows (a receipt, a strip) is stored downscaled, not lost."""
    w, h = image.size
    if limit is None or max(w, h) <= limit:
        return image
    s = limit / max(w, h)
    return image.resize((max(1, min(limit, round(w * s))), max(1, min(limit, round(h * s)))),
                        Image.Resampling.LANCZOS)


def _check_hash(doc_hash: str) -> str:
    if not isinstance(doc_hash, str) or not _HASH_RE.match(doc_hash):
        # The hash becomes a folder name: anything but lowercase hex could escape the store (../) or collide.
        raise ValueError(f"document hash must be 8-128 lowercase hex characters, got {doc_hash!r}")
    return doc_hash


def page_format(fmt: str) -> str:
    """The canonical name of a page-image format ("webp", "jpeg", "png"; "jpg" is "jpeg"); ValueError otherwise."""
    key = str(fmt).lower().lstrip(".")
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise ValueError(f"unknown page image format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return key


# fdatasync: the data and the size, not the timestamps; what a reader of the renamed file needs.
_fsync_file = getattr(os, "fdatasync", os.fsync)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. a platform without directory fds: the file itself was fsynced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class PageStore:
    """Encoded page images on disk, addressed by (document hash, page number)."""

    def __init__(self, root: str | Path, fmt: str = "webp", quality: int = 85, webp_method: int = WEBP_METHOD,
                 fsync: bool = True) -> None:
        fmt = page_format(fmt)
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {quality}")
        if not 0 <= webp_method <= 6:
            raise ValueError(f"webp_method must be in 0..6, got {webp_method}")
        self.root = Path(root)
        self.fmt = fmt
        self.ext = EXTENSIONS[fmt]
        self.quality = quality
        self.webp_method = webp_method
        self.fsync = fsync

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
        return str(self._doc_dir_rel(doc_hash) / f"{page:05d}.{self.ext}")

    def save(self, doc_hash: str, page: int, image: Image.Image) -> str:
        """Encode and write atomically; returns the path relative to root."""
        rel = self.relpath(doc_hash, page)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image = _fit_side(image, MAX_SIDE.get(self.fmt))
        # os.open with 0o666 (not mkstemp's 0o600) so the final file gets the usual umask permissions.
        tmp = target.parent / f".{target.stem}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                if self.fmt == "webp":
                    image.save(f, format="WEBP", quality=self.quality, method=self.webp_method)
                elif self.fmt == "jpeg":
                    image.save(f, format="JPEG", quality=self.quality, optimize=False)
                else:
                    image.save(f, format="PNG", compress_level=6)
                if self.fsync:  # the bytes reach the disk before the name points at them
                    f.flush()
                    _fsync_file(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return rel

    def sync_folders(self, rels: Iterable[str]) -> None:
        """fsync the folders of these saved pages, so that their renames survive a power cut."""
        if not self.fsync:
            return
        for folder in sorted({(self.root / rel).parent for rel in rels}):
            _fsync_folder(folder)
            _fsync_folder(folder.parent)  # a new document folder's own entry, in its <hash[:2]> bucket
        _fsync_folder(self.pages_dir)

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
            if p.suffix == f".{self.ext}" and p.stem.isdigit():
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

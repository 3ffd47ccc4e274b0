"""Page images on demand: the one way anything gets a page's picture (UI viewer and gallery, `ask`, rerank,
re-embedding with a later ``--encoder``, `eval`, LangChain metadata, ``--json``'s ``image``).

An index keeps what its ``page_store`` says (`indexing.extract`): nothing, a thumbnail, or the full image.
`PageImages.full` answers, in this order:

1. the stored full image (``page_store = "full"``, or an index built before page stores were a setting);
2. a rendering cached earlier (``<index>/cache/pages/``, keyed by content hash, so it is right for ever);
3. a fresh rendering from the source file, at the index's renderer, dpi and pixel cap (manifest meta
   `RENDER_META`), **only if the source still has the indexed content**: size and mtime as the manifest
   recorded them, else its SHA-256 (computed once per file state). It goes into the cache;
4. the stored thumbnail (the one image left when the source changed or vanished);
5. otherwise `PageUnavailable`, one line: "source changed since indexing: PATH" / "source missing: PATH".

Never the wrong page: nothing is rendered from a file whose content differs from what was indexed.

The cache is capped (`cache_bytes`) and least-recently-used: a hit refreshes the file's mtime, and a write that
takes the cache over its cap deletes the oldest files. Writes are atomic (temporary file + rename), so two
processes (a server and a CLI) can share it.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import threading
from functools import lru_cache
from pathlib import Path

from PIL import Image

from .manifest import MANIFEST_NAME, Manifest, NoIndex
from .pages import PageStore, page_format
from .render import DEFAULT_DPI, DEFAULT_MAX_PIXELS, DocumentError, make_renderer, thumbnail_of
from .scan import display_path, sha256_file
from .thumbnails import ThumbnailStore, encode_thumbnail

RENDER_META = "render"  # manifest meta: {"renderer", "dpi", "max_pixels"} the index's pages are drawn with
CACHE_DIR = "cache"
DEFAULT_CACHE_BYTES = 1 << 30
_KINDS = ("pages", "thumbs")


class PageUnavailable(LookupError):
    """No image can be given for this page; the message is one line saying why."""


def render_settings(manifest: Manifest) -> dict:
    raw = manifest.get_meta(RENDER_META)
    settings = {"renderer": "pymupdf", "dpi": DEFAULT_DPI, "max_pixels": DEFAULT_MAX_PIXELS}
    if raw:
        settings |= {k: v for k, v in json.loads(raw).items() if k in settings}
    return settings


class PageImages:
    """Page images of one index folder, from its store, its cache, or its sources (see the module docstring)."""

    def __init__(self, index_dir: str | Path, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.index_dir = Path(index_dir)
        self.cache_bytes = int(cache_bytes)
        self.cache_dir = self.index_dir / CACHE_DIR
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256
        self._lock = threading.Lock()
        self._cache_used: int | None = None  # bytes under cache/, counted on the first write

    # ---- public ------------------------------------------------------------------------------
    def full(self, doc_hash: str, page: int, image_path: str = "", allow_thumbnail: bool = True) -> Path:
        """A file holding the page at full size (or, when the source is gone, its thumbnail)."""
        stored = self._stored(doc_hash, page, image_path)
        if stored is not None:
            return stored
        cached = self._cached("pages", doc_hash, page)
        if cached is not None:
            return cached
        try:
            image = self._render(doc_hash, page, small=False)
        except PageUnavailable:
            if allow_thumbnail:
                thumb = self._thumbnail_file(doc_hash, page)
                if thumb is not None:
                    return thumb
            raise
        return self._put("pages", doc_hash, page, _webp(image, quality=85))

    def thumbnail(self, doc_hash: str, page: int, image_path: str = "") -> Path:
        """A file holding the page's thumbnail (`THUMBNAIL_SIDE` px), for galleries."""
        thumb = self._thumbnail_file(doc_hash, page)
        if thumb is not None:
            return thumb
        stored = self._stored(doc_hash, page, image_path)
        if stored is not None:
            with Image.open(stored) as im:
                small = thumbnail_of(im.convert("RGB"))
        else:
            small = self._render(doc_hash, page, small=True)
        return self._put("thumbs", doc_hash, page, encode_thumbnail(small))

    def load(self, doc_hash: str, page: int, image_path: str = "") -> Image.Image:
        """The full page as an RGB image, never a thumbnail (re-embedding); a fresh rendering is not cached."""
        found = self._stored(doc_hash, page, image_path) or self._cached("pages", doc_hash, page)
        if found is None:
            return self._render(doc_hash, page, small=False)
        with Image.open(found) as im:
            return im.convert("RGB")

    def forget(self, doc_hash: str) -> None:
        """Drop a document's cached images (its content left the index)."""
        for kind in _KINDS:
            folder = self.cache_dir / kind / doc_hash[:2] / doc_hash
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._cache_used = None  # recounted on the next write

    def cache_bytes_used(self) -> int:
        return sum(size for _, _, size in self._cache_files())

    # ---- where an image comes from ------------------------------------------------------------
    def _stored(self, doc_hash: str, page: int, image_path: str) -> Path | None:
        if image_path:
            try:
                p = PageStore(self.index_dir).path(image_path)
            except ValueError:
                p = None
            if p is not None and p.is_file():
                return p
        for fmt in ("webp", "jpeg", "png"):  # the index may have been built with another page_format
            p = self.index_dir / PageStore(self.index_dir, fmt=page_format(fmt)).relpath(doc_hash, page)
            if p.is_file():
                return p
        return None

    def _thumbnail_file(self, doc_hash: str, page: int) -> Path | None:
        cached = self._cached("thumbs", doc_hash, page)
        if cached is not None:
            return cached
        with ThumbnailStore(self.index_dir, create=False) as thumbs:
            data = thumbs.get(doc_hash, page)
        return self._put("thumbs", doc_hash, page, data) if data else None

    def _render(self, doc_hash: str, page: int, small: bool) -> Image.Image:
        source, settings = self._fresh_source(doc_hash)
        problems: list = []
        try:
            renderer = make_renderer(settings["renderer"], dpi=int(settings["dpi"]),
                                     max_pixels=int(settings["max_pixels"]))
            with renderer.open(source) as doc:
                pages = doc.render_small([page], problems.append) if small else doc.render([page], problems.append)
                rendered = next(iter(pages), None)
        except DocumentError as e:
            raise PageUnavailable(f"{display_path(source)}: {e.reason}") from None
        if rendered is None:
            reason = problems[0].reason if problems else "no such page"
            raise PageUnavailable(f"{display_path(source)} page {page}: {reason}")
        return rendered.image

    def _fresh_source(self, doc_hash: str) -> tuple[Path, dict]:
        """A source file that still holds `doc_hash`'s content, and the index's render settings."""
        if not (self.index_dir / MANIFEST_NAME).exists():
            raise PageUnavailable(str(NoIndex(self.index_dir)))
        with Manifest(self.index_dir) as manifest:
            settings = render_settings(manifest)
            paths = manifest.paths_by_hash([doc_hash]).get(doc_hash, [])
            records = [manifest.get(p) for p in paths]
        if not paths:
            raise PageUnavailable(f"page of unknown document {doc_hash[:12]}: not in the index")
        changed = None
        for path, rec in zip(paths, records, strict=True):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if rec is not None and rec.sha256 == doc_hash and (st.st_size, st.st_mtime_ns) == (rec.size,
                                                                                              rec.mtime_ns):
                return Path(path), settings
            if self._sha256(path, st) == doc_hash:  # touched, or a copy whose record is another version
                return Path(path), settings
            changed = changed or path
        if changed:
            raise PageUnavailable(f"source changed since indexing: {display_path(changed)}")
        raise PageUnavailable(f"source missing: {display_path(paths[0])}")

    def _sha256(self, path: str, st: os.stat_result) -> str | None:
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            try:
                self._hashes[key] = sha256_file(path)
            except OSError:
                return None
        return self._hashes[key]

    # ---- the cache ----------------------------------------------------------------------------
    def _cache_path(self, kind: str, doc_hash: str, page: int) -> Path:
        PageStore(self.index_dir).relpath(doc_hash, page)  # validates the hash and page number
        return self.cache_dir / kind / doc_hash[:2] / doc_hash / f"{page:05d}.webp"

    def _cached(self, kind: str, doc_hash: str, page: int) -> Path | None:
        p = self._cache_path(kind, doc_hash, page)
        try:
            os.utime(p)  # most recently used now
        except OSError:
            return None
        return p

    def _put(self, kind: str, doc_hash: str, page: int, data: bytes) -> Path:
        target = self._cache_path(kind, doc_hash, page)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        with self._lock:
            if self._cache_used is None:
                self._cache_used = self.cache_bytes_used()
            else:
                self._cache_used += len(data)
            if self._cache_used > self.cache_bytes:
                self._evict(keep=target)
        return target

    def _cache_files(self) -> list[tuple[float, Path, int]]:
        out = []
        for kind in _KINDS:
            for dirpath, _dirs, files in os.walk(self.cache_dir / kind):
                for name in files:
                    p = Path(dirpath, name)
                    try:
                        st = p.stat()
                    except OSError:
                        continue  # evicted by another process meanwhile
                    out.append((st.st_mtime, p, st.st_size))
        return out

    def _evict(self, keep: Path) -> None:
        files = sorted(self._cache_files(), key=lambda f: f[0])
        used = sum(size for _, _, size in files)
        for _, p, size in files:
            if used <= self.cache_bytes:
                break
            if p == keep:  # the image being handed out now stays, even alone over the cap
                continue
            p.unlink(missing_ok=True)
            used -= size
        self._cache_used = used


@lru_cache(maxsize=32)
def page_images(index_dir: str | Path, cache_bytes: int = DEFAULT_CACHE_BYTES) -> PageImages:
    """One `PageImages` per index folder and cap in this process (its hash memo and cache tally are shared)."""
    return PageImages(Path(index_dir), cache_bytes)


def _webp(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="WEBP", quality=quality, method=0)
    return buf.getvalue()

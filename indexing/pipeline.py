"""The indexing pipeline: files -> pages -> page images + text -> vectors -> store, incrementally.

Per run: scan the paths, compare each file with the manifest (size+mtime, then content hash), and
stream the new or changed ones through render -> page store -> encoder -> store in batches of
``batch_pages``, never holding a whole document in memory. A document is marked complete only
after all its pages are stored; a changed file's old pages are removed after its new ones are in.
An interrupted run resumes where the manifest says it stopped.

Processes: one writer per index at a time (``.writer.lock``, held for the run), and the store's
``IndexLock`` taken per batch (kept across batches while nobody else waits), so a search in
another process waits at most one batch write.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from .manifest import COMPLETE, PENDING, DocumentRecord, Manifest
from .ocr import PageOcr, PageText, build_page_ocr
from .pages import PageStore
from .render import DocumentError, Page, PageProblem, Renderer, document_title, make_renderer
from .scan import SourceFile, scan, sha256_file
from .store import PagePoint, StoreSession, StoreSettings, WriterLock, utc_now
from .text_dense import TextEmbedder, backfill_text_dense, embed_page_texts


class Embedder(Protocol):
    """What the indexer needs of an encoder (``moca_train.MoCaEncoder`` is one)."""

    name: str

    @property
    def dim(self) -> int: ...

    def encode_documents(self, images: Sequence[Image.Image]) -> np.ndarray: ...


class Events:
    """Progress hooks; the CLI and the UI override what they show. All no-ops here."""

    def files(self, total: int) -> None: ...

    def file_started(self, path: str, pages: int) -> None: ...

    def pages_done(self, n: int) -> None: ...

    def file_finished(self, path: str, status: str) -> None: ...

    def problem(self, path: str, reason: str) -> None: ...

    def message(self, text: str) -> None: ...

    def ocr_pages(self, queued: int = 0, done: int = 0) -> None:
        """Pages sent to the OCR engine (`queued`) and finished (`done`) since the last call."""


@dataclass
class IndexOptions:
    renderer: str = "pymupdf"
    dpi: int = 144
    max_pixels: int = 2_500_000
    page_format: str = "webp"
    batch_pages: int = 16
    lock_timeout_s: float = 10.0
    qdrant_url: str | None = None
    api_key: str | None = None
    collection: str = "docrag"
    command: str = "docrag index"
    bm25_language: str | None = None
    ocr: str = "auto"  # auto | always | never (see indexing.ocr)
    ocr_lang: str = "eng"  # Tesseract language codes, "eng+fra+jpn"
    ocr_engine: str = "tesseract"  # or rapidocr
    ocr_workers: int = 2

    def store_settings(self) -> StoreSettings:
        return StoreSettings(self.qdrant_url, self.api_key, self.collection, self.command, self.lock_timeout_s,
                             self.bm25_language)


@dataclass
class IndexReport:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    removed: int = 0
    pages: int = 0
    pages_rendered: int = 0
    visual_added: int = 0
    text_dense_added: int = 0  # stored pages that got a dense text vector from their stored text (backfill)
    ocr_pages: int = 0  # pages the OCR engine read in this run
    ocr_cached: int = 0  # pages whose OCR text came from the cache
    pages_without_text: int = 0  # pages indexed without usable text (scans with no OCR engine, OCR off)
    without_text_hint: str = ""  # what to do about them ("install tesseract-ocr for OCR")
    problems: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def indexed_anything(self) -> bool:
        return self.new + self.changed + self.unchanged > 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("new", "changed", "unchanged", "failed", "removed", "pages",
                                              "pages_rendered", "visual_added", "text_dense_added", "ocr_pages",
                                              "ocr_cached", "pages_without_text", "seconds")} | {
            "problems": [{"path": p, "reason": r} for p, r in self.problems]}


class Indexer:
    """Keeps an index folder in sync with files on disk. See the module docstring."""

    def __init__(
        self,
        index_dir: Path | str,
        embedder: Embedder | None = None,
        options: IndexOptions | None = None,
        events: Events | None = None,
        renderer: Renderer | None = None,
        text_embedder: TextEmbedder | None = None,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.text_embedder = text_embedder
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        self.opts = options or IndexOptions()
        self.events = events or Events()
        self.renderer = renderer or make_renderer(self.opts.renderer, dpi=self.opts.dpi,
                                                  max_pixels=self.opts.max_pixels)
        self.pages = PageStore(self.index_dir, fmt=self.opts.page_format)
        self._ocr: PageOcr | None = None

    # ---- public ------------------------------------------------------------------------------
    def sync(self, paths: Iterable[str | Path], prune: bool = False) -> IndexReport:
        """Index new and changed files under ``paths``; with ``prune``, drop files gone from them."""
        started = time.monotonic()
        roots = [Path(p).expanduser().absolute() for p in paths]
        report = IndexReport()
        with WriterLock(self.index_dir, self.opts.command), Manifest(self.index_dir) as manifest:
            dim = self.embedder.dim if self.embedder else None
            session = StoreSession(self.index_dir, self.opts.store_settings(), dim)
            o = self.opts
            self._ocr, report.without_text_hint = build_page_ocr(o.ocr, o.ocr_engine, o.ocr_lang, o.ocr_workers,
                                                                 self.index_dir)
            try:
                files, problems = scan(roots, exclude=[self.index_dir])
                for problem in problems:
                    self._fail(report, str(problem.path), problem.reason)
                self.events.files(len(files))
                for src in files:
                    self._sync_file(src, manifest, session, report)
                if prune:
                    report.removed = self._prune(roots, {str(f.path) for f in files}, manifest, session)
                if self.embedder is not None:
                    report.visual_added = self._backfill_visual(manifest, session)
                if self.text_embedder is not None:
                    report.text_dense_added = self._backfill_text_dense(session)
                self.pages.remove_stale_tmp()
            finally:
                self._finish_ocr(report)
                session.close(optimize=True)
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def delete(self, path: str | Path) -> int:
        """Remove one document from the index; returns the pages removed (0 if others share its content)."""
        key = str(Path(path).expanduser().absolute())
        with WriterLock(self.index_dir, self.opts.command), Manifest(self.index_dir) as manifest:
            record = manifest.get(key)
            if record is None:
                raise KeyError(f"{key}: not in the index")
            session = StoreSession(self.index_dir, self.opts.store_settings(), None)
            try:
                return self._remove(record, manifest, session)
            finally:
                session.close()

    # ---- one file ----------------------------------------------------------------------------
    def _sync_file(self, src: SourceFile, manifest: Manifest, session: StoreSession, report: IndexReport) -> None:
        path = str(src.path)
        record = manifest.get(path)
        if record and record.status == COMPLETE and record.size == src.size and record.mtime_ns == src.mtime_ns:
            report.unchanged += 1
            self.events.file_finished(path, "unchanged")
            return
        try:
            digest = sha256_file(src.path)
        except OSError as e:
            self._fail(report, path, f"cannot read file: {e.strerror or e}")
            return
        if record and record.sha256 == digest and record.status == COMPLETE:
            manifest.touch(path, src.size, src.mtime_ns)  # touched, same content
            report.unchanged += 1
            self.events.file_finished(path, "unchanged")
            return
        twin = manifest.complete_with_hash(digest)
        if twin is not None and twin.path != path:
            # Same content already indexed under another path: share its pages.
            old_hash = record.sha256 if record else None
            manifest.alias(path, digest, src.size, src.mtime_ns, twin)
            if old_hash and old_hash != digest:
                self._drop_hash_if_unused(old_hash, manifest, session)
            report.new += 1
            self.events.file_finished(path, "new (same content as another file)")
            return
        # What the new content replaces once it is complete: the last complete version's hash.
        status, replaces = "new", None
        if record is not None:
            replaces = record.replaces if record.status == PENDING else record.sha256
            if record.sha256 != digest and record.status == PENDING:
                # An interrupted run of content that has changed again: its partial pages are garbage.
                self._drop_hash_if_unused(record.sha256, manifest, session, keep_path=path)
            if replaces == digest:
                replaces = None
            status = "changed" if replaces else "new"
        try:
            total = self.renderer.page_count(src.path)
        except DocumentError as e:
            self._fail(report, path, e.reason)
            return
        title = _title(src.path)
        manifest.start(path, digest, src.size, src.mtime_ns, title, replaces)
        try:
            stored = self._index_pages(src, digest, title, total, manifest, session, report)
        except DocumentError as e:
            self._fail(report, path, e.reason)
            return
        if stored == 0:
            # Stays pending: the previous version (if any) remains searchable, the next run retries.
            self._fail(report, path, "no page could be rendered")
            return
        if replaces:
            self._drop_hash_if_unused(replaces, manifest, session, keep_path=path)
        record = manifest.get(path)
        manifest.complete(path, record.pages, record.visual_pages, utc_now())
        report.new += status == "new"
        report.changed += status == "changed"
        report.pages += stored
        self.events.file_finished(path, status)

    def _index_pages(self, src, digest, title, total, manifest, session, report) -> int:
        path = str(src.path)
        record = manifest.get(path)
        stored, visual, start = record.pages, record.visual_pages, record.next_page
        self.events.file_started(path, total)
        if start > 1:
            self.events.pages_done(start - 1)

        def on_problem(p: PageProblem) -> None:
            report.problems.append((f"{path} page {p.page}", p.reason))
            self.events.problem(f"{path} page {p.page}", p.reason)

        batch: list[Page] = []
        last = start - 1

        def flush() -> None:
            nonlocal stored, visual, batch
            if not batch and last < start:
                return
            points = self._points(batch, digest, path, title, report)
            if points:
                session.upsert(points)
            stored += len(points)
            visual += sum(p.visual is not None for p in points)
            manifest.progress(path, pages=stored, next_page=last + 1, visual_pages=visual, total_pages=total,
                              encoder=self.embedder.name if self.embedder and points else None)
            self.events.pages_done(len(batch))
            report.pages_rendered += len(batch)
            batch = []
            session.yield_if_wanted()

        for page in self.renderer.render(src.path, pages=range(start, total + 1), on_problem=on_problem):
            batch.append(page)
            last = page.number
            if len(batch) >= self.opts.batch_pages:
                flush()
        last = total
        flush()
        return stored

    def _points(self, batch: list[Page], digest: str, path: str, title: str, report: IndexReport) -> list[PagePoint]:
        if not batch:
            return []
        texts = self._page_texts(batch, path, report)
        image_paths = [self.pages.save(digest, p.number, p.image) for p in batch]
        vectors = self.embedder.encode_documents([p.image for p in batch]) if self.embedder else [None] * len(batch)
        text_vectors = (embed_page_texts(self.text_embedder, [t.text for t in texts]) if self.text_embedder
                        else [None] * len(batch))
        now = utc_now()
        return [
            PagePoint(doc_hash=digest, doc_path=path, page=p.number, image_path=rel, text=t.text, title=title,
                      indexed_at=now, visual=vec, sparse=None, text_source=t.source, ocr_engine=t.engine,
                      text_dense=tvec)
            for p, t, rel, vec, tvec in zip(batch, texts, image_paths, vectors, text_vectors, strict=True)
        ]

    # ---- OCR (indexing.ocr): text for pages whose text layer is empty or garbage ------------
    def _page_texts(self, batch: list[Page], path: str, report: IndexReport) -> list[PageText]:
        def failed(i: int, reason: str) -> None:
            where = f"{path} page {batch[i].number}"
            report.problems.append((where, reason))
            self.events.problem(where, reason)

        ocr = self._ocr or build_page_ocr("never", "", "", 1, self.index_dir)[0]
        return ocr.texts([(p.image, p.text) for p in batch], on_failure=failed,
                         on_progress=lambda queued, done: self.events.ocr_pages(queued, done))

    def _finish_ocr(self, report: IndexReport) -> None:
        if self._ocr is None:
            return
        stats = self._ocr.stats
        report.ocr_pages, report.ocr_cached, report.pages_without_text = stats.recognized, stats.cached, \
            stats.without_text
        self._ocr.close()
        self._ocr = None

    # ---- removal -----------------------------------------------------------------------------
    def _prune(self, roots: list[Path], seen: set[str], manifest: Manifest, session: StoreSession) -> int:
        removed = 0
        for record in list(manifest.documents()):
            p = Path(record.path)
            under = any(p == r or r in p.parents for r in roots)
            if under and record.path not in seen and not p.exists():
                self._remove(record, manifest, session)
                self.events.file_finished(record.path, "removed")
                removed += 1
        return removed

    def _remove(self, record: DocumentRecord, manifest: Manifest, session: StoreSession) -> int:
        manifest.remove(record.path)
        pages = self._drop_hash_if_unused(record.sha256, manifest, session)
        if record.replaces:
            self._drop_hash_if_unused(record.replaces, manifest, session)
        return pages

    def _drop_hash_if_unused(self, digest: str, manifest: Manifest, session: StoreSession,
                             keep_path: str | None = None) -> int:
        if manifest.hash_in_use(digest, except_path=keep_path):
            return 0
        removed = session.get().delete_document(digest)
        self.pages.delete_document(digest)
        return removed

    # ---- visual vectors for pages indexed without an encoder ---------------------------------
    def _backfill_visual(self, manifest: Manifest, session: StoreSession) -> int:
        todo: dict[str, DocumentRecord] = {}
        for r in manifest.documents(COMPLETE):
            if r.visual_pages < r.pages:
                todo.setdefault(r.sha256, r)
        if not todo:
            return 0
        added = 0
        self.events.message(f"adding visual vectors to {len(todo)} document(s) indexed without them")
        for digest, record in todo.items():
            missing = session.get().pages_missing_visual(limit=100_000, doc_hash=digest)
            self.events.file_started(record.path, len(missing))
            for i in range(0, len(missing), self.opts.batch_pages):
                chunk = missing[i : i + self.opts.batch_pages]
                images = [_load_rgb(self.pages.path(rel)) for _, _, rel in chunk]
                vectors = self.embedder.encode_documents(images)
                session.get().set_visual(digest, {page: vec for (_, page, _), vec in zip(chunk, vectors, strict=True)})
                added += len(chunk)
                self.events.pages_done(len(chunk))
                session.yield_if_wanted()
            manifest.set_visual(digest, record.pages, self.embedder.name)
            self.events.file_finished(record.path, "visual vectors added")
        return added

    # ---- dense text vectors for pages indexed without a text encoder (indexing.text_dense) ---
    def _backfill_text_dense(self, session: StoreSession) -> int:
        def on_start(n: int) -> None:
            self.events.message(f"adding dense text vectors to {n} page(s) indexed without them")
            self.events.file_started("text vectors", n)

        return backfill_text_dense(session.get, self.text_embedder, self.opts.batch_pages,
                                   on_batch=session.yield_if_wanted, on_start=on_start,
                                   on_pages=self.events.pages_done)

    def _fail(self, report: IndexReport, path: str, reason: str) -> None:
        report.failed += 1
        report.problems.append((path, reason))
        self.events.problem(path, reason)


def _title(path: Path) -> str:
    try:
        return document_title(path)
    except (DocumentError, OSError, RuntimeError, ValueError):
        return path.name


def _load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


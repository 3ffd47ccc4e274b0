"""The indexing pipeline: files -> pages -> page images + text -> vectors -> store, incrementally.

Per run: scan the paths, compare each file with the manifest (size+mtime, then content hash), count the pages
still to render (so progress covers the whole run from the start), and stream the new or changed files
through render -> page images -> encoder -> store in chunks of ``batch_pages``, never holding a whole
document in memory. Pages are rendered, and their thumbnails or full images encoded, in worker processes
(`indexing.workers`, ``workers`` of them, spawn), a few chunks ahead of this process and across file boundaries
(`indexing.feed`); this process takes the results in order and is the single writer of the store, the
thumbnails and the manifest. What a page keeps of its image
is ``page_store`` (`indexing.extract`); anything stored is durable (fsynced, or committed) before the manifest
records its pages, and anyone who needs a page image later gets it from `indexing.page_images`. A document is
marked complete only after all its pages are stored; a changed file's old pages are removed after its new
ones are in. An interrupted run resumes where the manifest says it stopped. One bad file (unreadable,
corrupt, a name that is not UTF-8, anything it raises) fails alone: one line, and the run goes on.

Paths: points are keyed by content hash; copies and renames only change the manifest, and readers resolve
current paths from it (`indexing.resolve`), so nothing here rewrites payloads on alias or removal.

Processes: one writer per index at a time (``.writer.lock``, held for the run), and the store's
``IndexLock`` taken to write a batch (`StoreSession.writing`) and given up between writes as soon as a reader
waits (a watcher thread, not the next batch, notices): rendering, page-image encoding and the vision encoder
never keep a search out, so a search in another process waits at most one batch write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

from .backfill import backfill_visual
from .cpus import available_cpus
from .extract import ChunkResult, ExtractedPage, ExtractSettings, check_page_store
from .feed import ChunkFeed, chunks_of
from .lock import IndexBusy
from .manifest import PENDING, DocumentRecord, Manifest
from .ocr import PageOcr, PageText, build_page_ocr, check_ocr_mode
from .page_images import RENDER_META, page_images
from .pages import PageStore
from .plan import Work, estimate_pages, needs_work, shared_with
from .render import DocumentError, Renderer, make_renderer
from .render.base import _one_line
from .run import Embedder, EmbedderUnavailable, Events, IndexOptions, IndexReport
from .scan import SourceFile, display_path, scan
from .sidecars import WORDS_META, PageSidecars, backfill_words
from .store import DimensionMismatch, PagePoint, StoreError, StoreSession, WriterLock, utc_now
from .text_dense import TextEmbedder, backfill_text_dense, embed_page_texts, worker_factory
from .workers import RenderPool

# A run this small renders in-process when the worker count is automatic: starting processes would cost more.
SMALL_RUN_PAGES = 64

# Errors of the store or the index as a whole: they end the run (every later file would fail the same way).
_RUN_ERRORS = (IndexBusy, StoreError, DimensionMismatch, EmbedderUnavailable)


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
        self.embedder = embedder
        self.opts = options or IndexOptions()
        self.events = events or Events()
        self._custom_renderer = renderer
        self.renderer = renderer or make_renderer(self.opts.renderer, dpi=self.opts.dpi,
                                                  max_pixels=self.opts.max_pixels)
        self.pages = PageStore(self.index_dir, fmt=self.opts.page_format, webp_method=self.opts.webp_method)
        self._expected = 0  # the pages bar's total
        self._ocr: PageOcr | None = None
        self._feed: ChunkFeed | None = None
        self._fallback_told = False
        self._images = page_images(self.index_dir)
        self._sidecars: PageSidecars | None = None  # thumbnails and word boxes

    # ---- public ------------------------------------------------------------------------------
    def sync(self, paths: Iterable[str | Path], prune: bool = False) -> IndexReport:
        """Index new and changed files under ``paths``; with ``prune``, drop files gone from them."""
        started = time.monotonic()
        roots = [Path(p).expanduser().absolute() for p in paths]
        report = IndexReport()
        check_ocr_mode(self.opts.ocr)  # a bad mode is refused now, not once per file
        check_page_store(self.opts.page_store)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with WriterLock(self.index_dir, self.opts.command), Manifest(self.index_dir) as manifest:
            dim = self.embedder.dim if self.embedder else None
            session = StoreSession(self.index_dir, self.opts.store_settings(), dim)
            self._sidecars = PageSidecars(self.index_dir, thumbnails=self.opts.page_store == "thumbnail")
            try:
                if self.opts.qdrant_url:
                    with session.writing():  # a server that cannot be reached: say so now, even on a no-op run
                        pass
                files, problems = scan(roots, exclude=[self.index_dir])
                for problem in problems:
                    self._fail(report, str(problem.path), problem.reason)
                self.events.files(len(files))
                work = [w for src in files if (w := self._guarded(src, report, self._plan, src, manifest, report))]
                self._set_expected(estimate_pages(work, manifest, self.renderer))
                if work:  # what on-demand page images are drawn with (indexing.page_images)
                    manifest.set_meta(RENDER_META, json.dumps({"renderer": self.renderer.name, "dpi": self.opts.dpi,
                                                               "max_pixels": self.opts.max_pixels}))
                if self._expected:
                    self._start_feed(work, manifest, report)
                for w in work:
                    self._guarded(w.src, report, self._index_file, w, manifest, session, report)
                if prune:
                    report.removed = self._prune(roots, {str(f.path) for f in files}, manifest, session)
                if self.embedder is not None:
                    report.visual_added = backfill_visual(
                        manifest, session, self.embedder, self._images, self.opts.batch_pages, self.events,
                        more_pages=lambda n: self._set_expected(self._expected + n),
                        fail=lambda path, reason: self._fail(report, path, reason))
                if self.text_embedder is not None:
                    report.text_dense_added = self._backfill_text_dense(session)
                if self._sidecars.pages_without_words:
                    manifest.set_meta(WORDS_META, "")
                report.words_added = backfill_words(manifest, session, self._sidecars.words,
                               fail=lambda path, reason: self.events.message(f"{display_path(path)}: {reason}"))
                self.pages.remove_stale_tmp()
            finally:
                if self._feed is not None:
                    self._feed.close()
                    self._feed.pool.close()
                    self._feed = None
                self._sidecars.close()
                self._finish_ocr(report)
                session.close(optimize=True)
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def delete(self, path: str | Path) -> int:
        """Remove one document from the index; returns the pages removed (0 if others share its content).

        Raises `NoIndex` (creating nothing) when the folder holds no index, KeyError when the path is not in it.
        """
        key = str(Path(path).expanduser().absolute())
        Manifest.existing(self.index_dir).close()
        with WriterLock(self.index_dir, self.opts.command), Manifest(self.index_dir) as manifest:
            record = manifest.get(key)
            if record is None:
                raise KeyError(f"{display_path(key)}: not in the index")
            session = StoreSession(self.index_dir, self.opts.store_settings(), None)
            self._sidecars = PageSidecars(self.index_dir, thumbnails=False)
            try:
                return self._remove(record, manifest, session)
            finally:
                self._sidecars.close()
                session.close()

    # ---- one file ----------------------------------------------------------------------------
    def _guarded(self, src: SourceFile, report: IndexReport, fn, *args):
        """Run one file's step; anything it raises fails that file alone (one line), except run-wide errors."""
        try:
            return fn(*args)
        except _RUN_ERRORS:
            raise
        except DocumentError as e:
            self._fail(report, str(src.path), e.reason)
        except OSError as e:
            self._fail(report, str(src.path), f"cannot read or write: {e.strerror or _one_line(str(e))}")
        except Exception as e:  # a bug or an odd file must never cost the rest of the run
            self._fail(report, str(src.path), f"{type(e).__name__}: {_one_line(str(e)) or 'unexpected error'}")
        return None

    def _plan(self, src: SourceFile, manifest: Manifest, report: IndexReport) -> Work | None:
        """Unchanged files are done here; the rest come back as work, with their content hash."""
        try:
            work = needs_work(src, manifest)
        except OSError as e:
            self._fail(report, str(src.path), f"cannot read file: {e.strerror or e}")
            return None
        if work is None:
            report.unchanged += 1
            self.events.file_finished(str(src.path), "unchanged")
        return work

    def _set_expected(self, total: int) -> None:
        self._expected = max(0, total)
        self.events.pages_total(self._expected)

    def _index_file(self, w: Work, manifest: Manifest, session: StoreSession, report: IndexReport) -> None:
        src, digest = w.src, w.digest
        path = str(src.path)
        record = manifest.get(path)  # again: an earlier file of this run may have changed things
        twin = shared_with(w, manifest)
        if twin is not None:
            # Same content already indexed under another path: share its pages.
            old_hash = record.sha256 if record else None
            manifest.alias(path, digest, src.size, src.mtime_ns, twin)
            if old_hash and old_hash != digest:
                self._drop_hash_if_unused(old_hash, manifest, session)
            self._set_expected(self._expected - w.expected_pages)
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
            doc = self.renderer.open(src.path)
        except DocumentError:
            self._set_expected(self._expected - w.expected_pages)
            raise
        with doc:
            manifest.start(path, digest, src.size, src.mtime_ns, doc.title, replaces)
            start = manifest.get(path).next_page
            actual = max(0, doc.page_count - start + 1)
            if actual != w.expected_pages:
                self._set_expected(self._expected - w.expected_pages + actual)
            stored = self._index_pages(doc, digest, manifest, session, report)
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

    def _index_pages(self, doc, digest: str, manifest: Manifest, session: StoreSession,
                     report: IndexReport) -> int:
        path, title, total = str(doc.path), doc.title, doc.page_count
        record = manifest.get(path)
        stored, visual, start = record.pages, record.visual_pages, record.next_page
        self.events.file_started(path, max(0, total - start + 1))
        feed = self._render_feed(report)
        chunks = chunks_of(path, digest, start, total, self.opts.batch_pages)

        def flush(result: ChunkResult, last: int) -> None:
            nonlocal stored, visual
            for p in result.problems:
                where = f"{display_path(path)} page {p.page}"
                report.problems.append((where, p.reason))
                self.events.problem(where, p.reason)
            points = self._points(result.pages, digest, path, title, report)
            if points:
                session.upsert(points)  # the only step that needs the index lock
            stored += len(points)
            visual += sum(p.visual is not None for p in points)
            manifest.progress(path, pages=stored, next_page=last + 1, visual_pages=visual, total_pages=total,
                              encoder=self.embedder.name if self.embedder and points else None)
            self.events.pages_done(len(result.pages) + len(result.problems))
            report.pages_rendered += len(result.pages)

        feed.open_file(chunks)
        try:
            for _ in chunks:
                chunk, result = feed.next_result(doc)
                self._tell_fallback()
                flush(result, chunk.stop - 1)
        except BaseException:  # an error mid-file: nothing more is rendered for it
            feed.discard(path, digest)
            raise
        return stored

    def _start_feed(self, work: list[Work], manifest: Manifest, report: IndexReport) -> None:
        """Plan every file's chunks and start the workers on the first ones, before the first file is opened
        here: the workers then render across file boundaries (`indexing.feed`)."""
        feed = self._render_feed(report)
        for w in work:
            if w.expected_pages <= 0:
                continue
            rec = w.record
            start = rec.next_page if rec and rec.sha256 == w.digest and rec.status == PENDING else 1
            feed.plan(chunks_of(str(w.src.path), w.digest, start, start - 1 + w.expected_pages,
                                self.opts.batch_pages))
        feed.fill()

    def _render_feed(self, report: IndexReport) -> ChunkFeed:
        """The run's render workers and what they are fed, started once (with the OCR that decides which pages
        need a full image): `opts.workers`, or the CPUs available, or none for a small run."""
        if self._feed is None:
            o = self.opts
            if self._ocr is None:
                self._ocr, report.without_text_hint = build_page_ocr(o.ocr, o.ocr_engine, o.ocr_lang, o.ocr_workers,
                                                                     self.index_dir)
            workers = o.workers
            if workers is None:
                workers = 0 if self._expected < SMALL_RUN_PAGES else available_cpus()
            in_workers = workers > 0 and self._custom_renderer is None
            settings = ExtractSettings(
                renderer=self.renderer.name, dpi=o.dpi, max_pixels=o.max_pixels, page_store=o.page_store,
                full_images=self.embedder is not None, ocr=o.ocr if self._ocr.engine is not None else "never",
                store_root=str(self.index_dir), page_format=o.page_format, webp_method=o.webp_method,
                text_encoder=worker_factory(self.text_embedder) if in_workers else None)
            self._feed = ChunkFeed(RenderPool(settings, workers, self._custom_renderer))
        return self._feed

    def _tell_fallback(self) -> None:
        """Say once why rendering runs in this process after all (workers that could not start)."""
        if self._feed is not None and self._feed.pool.fallback and not self._fallback_told:
            self._fallback_told = True
            self.events.message(self._feed.pool.fallback)

    def _points(self, pages: list[ExtractedPage], digest: str, path: str, title: str,
                report: IndexReport) -> list[PagePoint]:
        if not pages:
            return []
        texts = self._page_texts(pages, path, report)
        vectors = self.embedder.encode_documents([p.image for p in pages]) if self.embedder else [None] * len(pages)
        text_vectors = self._text_vectors(pages, texts)
        # Stored images are durable before the manifest counts these pages.
        self.pages.sync_folders([p.image_path for p in pages if p.image_path])
        self._sidecars.put(digest, pages, texts)
        now = utc_now()
        return [
            PagePoint(doc_hash=digest, doc_path=path, page=p.number, image_path=p.image_path, text=t.text, title=title,
                      indexed_at=now, visual=vec, sparse=None, text_source=t.source, ocr_engine=t.engine,
                      text_dense=tvec)
            for p, t, vec, tvec in zip(pages, texts, vectors, text_vectors, strict=True)
        ]

    def _text_vectors(self, pages: list[ExtractedPage], texts: list[PageText]) -> list:
        """Each page's dense text vector: the worker's, where it embedded the text this page keeps; else here."""
        if self.text_embedder is None:
            return [None] * len(pages)
        todo = [i for i, (p, t) in enumerate(zip(pages, texts, strict=True))
                if p.text_vector is None or t.text != p.text]
        out = [p.text_vector for p in pages]
        for i, vec in zip(todo, embed_page_texts(self.text_embedder, [texts[i].text for i in todo]), strict=True):
            out[i] = vec
        return out

    # ---- OCR (indexing.ocr): text for pages whose text layer is empty or garbage ------------
    def _page_texts(self, batch: list[ExtractedPage], path: str, report: IndexReport) -> list[PageText]:
        def failed(i: int, reason: str) -> None:
            where = f"{path} page {batch[i].number}"
            report.problems.append((where, reason))
            self.events.problem(where, reason)

        # self._ocr is built with the render pool, for the first file: a run with nothing to index never starts it
        return self._ocr.texts([(p.image, p.text) for p in batch], on_failure=failed,
                               on_progress=lambda queued, done: self.events.ocr_pages(queued, done),
                               usable=[p.layer_usable for p in batch])

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
        with session.writing() as store:
            removed = store.delete_document(digest)
        self.pages.delete_document(digest)
        self._sidecars.delete_document(digest)
        page_images(self.index_dir).forget(digest)
        return removed

    # ---- dense text vectors for pages indexed without a text encoder (indexing.text_dense) ---
    def _backfill_text_dense(self, session: StoreSession) -> int:
        def on_start(n: int) -> None:
            self.events.message(f"adding dense text vectors to {n} page(s) indexed without them")
            self._set_expected(self._expected + n)
            self.events.file_started("text vectors", n)

        return backfill_text_dense(session.writing, self.text_embedder, self.opts.batch_pages,
                                   on_start=on_start, on_pages=self.events.pages_done)

    def _fail(self, report: IndexReport, path: str, reason: str) -> None:
        shown = display_path(path)  # a non-UTF-8 name prints as \xNN, on one line
        report.failed += 1
        report.problems.append((shown, reason))
        self.events.problem(shown, reason)

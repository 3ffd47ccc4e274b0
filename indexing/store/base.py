"""The `Store` base class both backends share: writes, vector back-fill, counts, and search (one Qdrant query)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from indexing.bm25 import Bm25Encoder, Sparse, encoder
from indexing.tokenize import DEFAULT_CJK

from .points import (
    MODES,
    SOURCES,
    TEXT_DENSE,
    VISUAL,
    Hit,
    Mode,
    PagePoint,
    _as_vector,
    _doc_filter,
    _Filter,
    _Record,
    point_id,
    utc_now,
)
from .schema import SCHEMA_VERSION, DimensionMismatch, StoreError

DEFAULT_COLLECTION = "docrag"
DEFAULT_RRF_K = 60

def _disk_usage(path: Path) -> int:
    """Bytes actually allocated under `path` (sparse/preallocated mmap files counted by their blocks)."""
    total = 0
    if not path.exists():
        return 0
    for p in [path, *path.rglob("*")]:
        try:
            st = p.lstat()
        except OSError:
            continue
        if p.is_file() or p == path:
            blocks = getattr(st, "st_blocks", None)
            total += blocks * 512 if blocks is not None else st.st_size
    return total


class Store(ABC):
    """A page store with visual, text (BM25) and hybrid (RRF) search. Use as a context manager."""

    _upsert_batch = 256

    def __init__(self, *, language: str, rrf_k: int = DEFAULT_RRF_K, cjk: str = DEFAULT_CJK) -> None:
        self.language = language
        self.cjk = cjk
        self.rrf_k = rrf_k
        self.rrf_weights: dict[str, float] = {}  # source (text | dense | visual) -> RRF weight; missing = 1.0
        self._bm25: Bm25Encoder = encoder(language, cjk)
        self._dim: int | None = None
        self._text_dim: int | None = None
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- backend primitives
    @abstractmethod
    def _upsert_records(self, records: list[_Record]) -> None: ...

    @abstractmethod
    def _count(self, flt: _Filter | None) -> int: ...

    @abstractmethod
    def _delete(self, flt: _Filter) -> None: ...

    @abstractmethod
    def _existing_ids(self, ids: list[str]) -> set[str]: ...

    @abstractmethod
    def _update_vectors(self, name: str, vectors: dict[str, list[float]]) -> None:
        """Set one named dense vector on existing points (id -> vector), leaving the rest untouched."""

    @abstractmethod
    def _scroll(self, flt: _Filter | None, limit: int, fields: list[str]) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _facet(self, key: str, limit: int) -> dict[str, int]: ...

    @abstractmethod
    def _search(
        self,
        sources: list[tuple[str, Sparse | list[float]]],
        fuse: bool,
        flt: _Filter | None,
        top_k: int,
        prefetch_k: int,
        rrf_k: int,
        weights: list[float] | None,
    ) -> list[tuple[float, dict[str, Any]]]:
        """One query: `sources` are (vector name, query vector); `fuse` makes each a prefetch, fused by RRF
        (k, per-prefetch `weights` or None for equal ones); otherwise the single source is searched directly."""

    @abstractmethod
    def _add_dense_vector(self, name: str, dim: int) -> None:
        """Create the dense vector `name` (cosine, `dim`) on a store that lacks it, and record it in the schema."""

    @abstractmethod
    def bytes_on_disk(self) -> int:
        """Bytes the index takes on disk (0 where unknown, e.g. a remote server or memory)."""

    @abstractmethod
    def optimize(self) -> None:
        """Merge segments and build their indexes (payload, sparse, HNSW if enabled); call at the end of a run."""

    @abstractmethod
    def close(self) -> None:
        """Release the index (for Edge: the shard, so that another process can open it). Idempotent."""

    @property
    @abstractmethod
    def closed(self) -> bool: ...

    # ---------------------------------------------------------------- shared logic
    _models: Any  # the backend's module of request types (qdrant_edge, or qdrant_client.models)

    @abstractmethod
    def _cond(self, c: tuple) -> Any: ...

    def _filter(self, flt: _Filter | None) -> Any:
        """A neutral `_Filter` in the backend's own types (both spell Filter(must, should, must_not) alike)."""
        if flt is None:
            return None
        return self._models.Filter(
            must=[self._cond(c) for c in flt.must] or None,
            should=[self._cond(c) for c in flt.should] or None,
            must_not=[self._cond(c) for c in flt.must_not] or None,
        )

    def _check_open(self) -> None:
        if self.closed:
            raise StoreError("store is closed")

    @property
    def dim(self) -> int | None:
        """Dimension of the dense `visual` vectors, None while the index is text-only."""
        return self._dim

    def ensure_dim(self, dim: int) -> None:
        """Fix the dense dimension: adds the `visual` vector to a text-only index, or checks it matches."""
        self._ensure_dense(VISUAL, "_dim", dim, "")

    @property
    def text_dim(self) -> int | None:
        """Dimension of the dense `text_dense` vectors, None while the index has none."""
        return self._text_dim

    def ensure_text_dim(self, dim: int) -> None:
        """Like `ensure_dim`, for the dense text vector `text_dense`."""
        self._ensure_dense(TEXT_DENSE, "_text_dim", dim, "text ")

    def _ensure_dense(self, name: str, attr: str, dim: int, what: str) -> None:
        dim = int(dim)
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        with self._lock:
            self._check_open()
            current = getattr(self, attr)
            if current is None:
                setattr(self, attr, dim)
                try:
                    self._add_dense_vector(name, dim)
                except BaseException:
                    setattr(self, attr, None)
                    raise
            elif current != dim:
                raise DimensionMismatch(current, dim, what)

    def _record(self, p: PagePoint) -> _Record:
        if not p.doc_hash:
            raise ValueError("PagePoint.doc_hash must not be empty")
        if int(p.page) < 1:
            raise ValueError(f"PagePoint.page is 1-based, got {p.page} for {p.doc_path}")
        dense = None
        if p.visual is not None:
            vec = _as_vector(p.visual, f"visual vector of {p.doc_path} page {p.page}")
            self.ensure_dim(vec.shape[0])
            dense = vec.tolist()
        text_dense = None
        if p.text_dense is not None:
            tvec = _as_vector(p.text_dense, f"text vector of {p.doc_path} page {p.page}")
            self.ensure_text_dim(tvec.shape[0])
            text_dense = tvec.tolist()
        sparse = p.sparse if p.sparse is not None else self._bm25.embed_document(p.text)
        return _Record(p.id, dense, None if sparse.is_empty else sparse, p.payload(), text_dense)

    def upsert(self, points: Sequence[PagePoint]) -> None:
        """Insert or overwrite pages (whole points: a re-upserted page without `visual` loses its old one)."""
        with self._lock:
            self._check_open()
            records = [self._record(p) for p in points]
            for i in range(0, len(records), self._upsert_batch):
                self._upsert_records(records[i : i + self._upsert_batch])

    def delete_document(self, doc_hash: str) -> int:
        """Remove every page of the document with this content hash; returns how many were removed."""
        return self._delete_counted(_Filter(must=(("eq", "doc_hash", doc_hash),)))

    def delete_where_path(self, doc_path: str) -> int:
        """Remove every page stored under this exact path (whatever its hash); returns how many."""
        return self._delete_counted(_Filter(must=(("eq", "doc_path", doc_path),)))

    def _delete_counted(self, flt: _Filter) -> int:
        with self._lock:
            self._check_open()
            n = self._count(flt)
            if n:
                self._delete(flt)
            return n

    def set_visual(self, doc_hash: str, page_vectors: dict[int, np.ndarray]) -> None:
        """Add dense vectors to pages stored earlier, leaving their payload and sparse vector untouched.

        Raises KeyError naming the pages that are not in the store (nothing is written then).
        """
        self._set_vectors(VISUAL, doc_hash, page_vectors)

    def set_text_dense(self, doc_hash: str, page_vectors: dict[int, np.ndarray]) -> None:
        """Add `text_dense` vectors to pages stored earlier (a backfill from their stored text); see `set_visual`."""
        self._set_vectors(TEXT_DENSE, doc_hash, page_vectors)

    def _set_vectors(self, name: str, doc_hash: str, page_vectors: dict[int, np.ndarray]) -> None:
        if not page_vectors:
            return
        ensure = self.ensure_dim if name == VISUAL else self.ensure_text_dim
        with self._lock:
            self._check_open()
            vectors: dict[str, list[float]] = {}
            pages: dict[str, int] = {}
            for page, v in page_vectors.items():
                vec = _as_vector(v, f"{name} vector of {doc_hash} page {page}")
                ensure(vec.shape[0])
                pid = point_id(doc_hash, int(page))
                vectors[pid] = vec.tolist()
                pages[pid] = int(page)
            missing = sorted(pages[i] for i in set(vectors) - self._existing_ids(list(vectors)))
            if missing:
                raise KeyError(f"document {doc_hash} has no stored page(s) {missing}")
            ids = list(vectors)
            for i in range(0, len(ids), self._upsert_batch):
                self._update_vectors(name, {k: vectors[k] for k in ids[i : i + self._upsert_batch]})

    def pages_missing_visual(self, limit: int = 1000, doc_hash: str | None = None) -> list[tuple[str, int, str]]:
        """Up to `limit` pages without a dense vector, as (doc_hash, page, image_path), sorted."""
        with self._lock:
            self._check_open()
            must = (("eq", "doc_hash", doc_hash),) if doc_hash else ()
            must_not = (("has_vector", VISUAL),) if self._dim is not None else ()
            flt = _Filter(must=must, must_not=must_not) if (must or must_not) else None
            rows = self._scroll(flt, limit, ["doc_hash", "page", "image_path"])
        out = [(str(r.get("doc_hash", "")), int(r.get("page", 0)), str(r.get("image_path", ""))) for r in rows]
        return sorted(out)

    def pages_missing_text_dense(self, limit: int = 1000, doc_hash: str | None = None) -> list[tuple[str, int, str]]:
        """Up to `limit` pages with text but without a `text_dense` vector, as (doc_hash, page, text), sorted."""
        with self._lock:
            self._check_open()
            must = (("eq", "doc_hash", doc_hash),) if doc_hash else ()
            must_not = (("has_vector", TEXT_DENSE),) if self._text_dim is not None else ()
            flt = _Filter(must=must, must_not=must_not) if (must or must_not) else None
            rows = self._scroll(flt, limit, ["doc_hash", "page", "text"])
        out = [(str(r.get("doc_hash", "")), int(r.get("page", 0)), str(r.get("text") or "")) for r in rows]
        return sorted(row for row in out if row[2].strip())  # a page without text gets no text vector

    def page_texts(self, doc_hash: str, limit: int = 100_000) -> list[tuple[int, str, str]]:
        """A document's pages as (page, text, text_source), sorted: what their word boxes are tied to."""
        with self._lock:
            self._check_open()
            rows = self._scroll(_Filter(must=(("eq", "doc_hash", doc_hash),)), limit, ["page", "text", "text_source"])
        return sorted((int(r.get("page", 0)), str(r.get("text") or ""), str(r.get("text_source") or ""))
                      for r in rows)

    def count_with_text_dense(self) -> int:
        """Number of pages that carry a `text_dense` vector."""
        with self._lock:
            self._check_open()
            if self._text_dim is None:
                return 0
            return self._count(_Filter(must=(("has_vector", TEXT_DENSE),)))

    def count(self) -> int:
        """Number of pages stored."""
        with self._lock:
            self._check_open()
            return self._count(None)

    def count_with_visual(self) -> int:
        """Number of pages that carry a dense `visual` vector."""
        with self._lock:
            self._check_open()
            if self._dim is None:
                return 0
            return self._count(_Filter(must=(("has_vector", VISUAL),)))

    def document_page_counts(self) -> dict[str, int]:
        """doc_hash -> number of pages stored (the store's side of the indexing manifest)."""
        with self._lock:
            self._check_open()
            n = self._count(None)
            return self._facet("doc_hash", n) if n else {}

    def query(
        self,
        *,
        text: str | None = None,
        vector: np.ndarray | None = None,
        mode: Mode = "hybrid",
        top_k: int = 5,
        doc_filter: str | None = None,
        prefetch_k: int = 50,
        text_vector: np.ndarray | None = None,
        rrf_k: int | None = None,
        weights: dict[str, float] | None = None,
        doc_hashes: Sequence[str] | None = None,
    ) -> list[Hit]:
        """Search pages: `text` (BM25) needs `text`, `visual` needs `vector`, `dense` needs `text_vector` (the
        query embedded by the index's text encoder); `hybrid` fuses every source it is given (BM25 when `text`
        has terms, visual, dense) in ONE query with one prefetch each, by weighted RRF (`rrf_k`, `weights` by
        source name; defaults: the store's `rrf_k` and `rrf_weights`). One point per page, so one hit per page.

        `doc_hashes` keeps only those documents' pages (how `docrag search --filter doc=` resolves a name through
        the manifest, see `indexing.resolve`); `doc_filter` matches the payload's hash or first-stored path.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if top_k <= 0 or (doc_hashes is not None and not doc_hashes):
            return []
        if mode in ("text", "hybrid") and text is None:
            raise ValueError(f"mode {mode!r} needs a query text")
        if mode == "visual" and vector is None:
            raise ValueError(f"mode {mode!r} needs a query vector")
        if mode == "dense" and text_vector is None:
            raise ValueError("mode 'dense' needs a query text vector (from the index's text encoder)")
        if mode == "hybrid" and vector is None and text_vector is None:
            raise ValueError("mode 'hybrid' needs a query vector (visual and/or dense text) besides the text")
        with self._lock:
            self._check_open()
            sources: dict[str, Sparse | list[float]] = {}
            if mode in ("text", "hybrid"):
                sparse = self._bm25.embed_query(text or "")
                if mode == "text" and sparse.is_empty:
                    return []  # nothing left after stop words: no page can match
                if not sparse.is_empty:  # hybrid: fuse the dense sides alone rather than send an empty query
                    sources["text"] = sparse
            if mode in ("dense", "hybrid") and text_vector is not None and (mode == "dense" or self._text_dim):
                if self._text_dim is None:  # hybrid leaves it out: no page has one yet (none with text so far)
                    raise StoreError("this index has no dense text vectors (built without --text-encoder)")
                tvec = _as_vector(text_vector, "query text vector")
                if tvec.shape[0] != self._text_dim:
                    raise DimensionMismatch(self._text_dim, tvec.shape[0], "text ")
                sources["dense"] = tvec.tolist()
            if mode in ("visual", "hybrid") and vector is not None:
                if self._dim is None:
                    raise StoreError("this index has no visual vectors (built without an encoder): use mode='text'")
                vec = _as_vector(vector, "query vector")
                if vec.shape[0] != self._dim:
                    raise DimensionMismatch(self._dim, vec.shape[0])
                sources["visual"] = vec.tolist()
            ordered = [(name, sources[name]) for name in SOURCES if name in sources]
            w = {**self.rrf_weights, **(weights or {})}
            if any(float(w.get(name, 1.0)) < 0 for name, _ in ordered):
                raise ValueError(f"RRF weights must not be negative, got {w}")
            if mode == "hybrid":  # a source weighted 0 adds nothing to RRF: leave its prefetch out
                ordered = [(name, q) for name, q in ordered if float(w.get(name, 1.0)) > 0]
                if not ordered:
                    raise ValueError(f"hybrid search with every source weighted 0 ({w}): nothing to rank by")
            wlist = [float(w.get(name, 1.0)) for name, _ in ordered]
            rows = self._search(
                [(SOURCES[name], q) for name, q in ordered],
                mode == "hybrid",
                _doc_filter(doc_filter, doc_hashes),
                int(top_k),
                max(int(prefetch_k), int(top_k)),
                int(rrf_k if rrf_k is not None else self.rrf_k),
                None if all(x == 1.0 for x in wlist) else wlist,
            )
        return [Hit.from_payload(payload, score) for score, payload in rows]

    @property
    def bm25(self) -> Bm25Encoder:
        """The index's BM25 encoder (its language and CJK mode): query terms, snippets."""
        return self._bm25

    _schema_extra: dict[str, Any] = {}

    def _schema(self, created_at: str | None = None) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "dim": self._dim,
            "text_dim": self._text_dim,
            "distance": "cosine",
            "sparse": "bm25",
            "bm25_language": self.language,
            "bm25_cjk": self.cjk,
            "created_at": created_at or utc_now(),
            **self._schema_extra,
        }

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

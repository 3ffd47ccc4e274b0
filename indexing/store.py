"""The vector store: one `Store` interface, two Qdrant backends.

* `EdgeStore`: Qdrant Edge, the real Rust engine embedded in-process, persistent in a folder (the default,
  `index_dir / "qdrant"`). One process at a time: see `indexing.lock` for the process model (short-lived
  opens under `IndexLock`); `locked_store` bundles the two.
* `QdrantClientStore`: qdrant-client, for a Qdrant server or cluster (`url`, API key from the caller, which
  reads `QDRANT_API_KEY`), or its local pure-Python mode (`location=":memory:"`, `path=`) used in tests.

One point per page, id `uuid5(doc_hash:page)`, so re-indexing a page overwrites it and never duplicates it.
Vectors: dense `visual` (cosine, one vector per page from the vision-language encoder) and sparse `text`
(BM25 term frequencies of the page's text layer, IDF applied by the engine). Payload: doc_hash, doc_path,
page, image_path, text, title, indexed_at, with keyword indexes on doc_hash and doc_path.

Dimension: a store created without a dim (indexing text-only, no encoder yet) has no `visual` vector; the
first dense vector that arrives (upsert, `set_visual`, or reopening with a dim) adds it with that dim
(Qdrant's create-vector-name operation). From then on the dim is fixed: a different one raises
`DimensionMismatch` ("index was built with dim X, encoder gives Y"). With a server, adding a vector name to
an existing collection needs Qdrant >= 1.16; pass `dim` at creation to avoid relying on it.

Which pages lack a dense vector is asked from the engine itself (`has_vector` condition), not from a payload
flag, so it cannot drift out of sync.

Schema metadata (schema version, dim, BM25 language, created_at) lives in `docrag_schema.json` inside the
Edge shard folder (it moves with the shard; Qdrant ignores it), and in the collection's metadata for the
client backend.

`doc_filter` in `query` keeps the pages of documents whose doc_hash equals the filter or whose doc_path
contains it (so a full path, a file name or a folder all work).

Hybrid search is ONE Qdrant query: a BM25 prefetch on `text` and a dense prefetch on `visual`, fused by
reciprocal rank fusion (k=60 by default, set explicitly so both backends rank alike).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from indexing.bm25 import DEFAULT_LANGUAGE, Bm25Encoder, Sparse, encoder
from indexing.lock import DEFAULT_TIMEOUT_S, IndexBusy, IndexLock, describe_holder, pid_alive, read_holder

SCHEMA_VERSION = 1
SCHEMA_FILE = "docrag_schema.json"
VISUAL = "visual"
TEXT = "text"
DEFAULT_COLLECTION = "docrag"
DEFAULT_RRF_K = 60
PAYLOAD_FIELDS = ("doc_hash", "doc_path", "page", "image_path", "text", "title", "indexed_at")
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "docrag:page")

Mode = Literal["visual", "text", "hybrid"]
MODES: tuple[str, ...] = ("visual", "text", "hybrid")


class DimensionMismatch(ValueError):
    """The index's dense vectors have another dimension than the encoder's."""

    def __init__(self, index_dim: int, given_dim: int) -> None:
        self.index_dim = index_dim
        self.given_dim = given_dim
        super().__init__(
            f"index was built with dim {index_dim}, encoder gives {given_dim}: "
            "re-index into a new index folder/collection, or use the encoder the index was built with"
        )


class StoreError(RuntimeError):
    """The store is unusable as asked (closed, not a docrag index, incompatible schema)."""


def point_id(doc_hash: str, page: int) -> str:
    """Deterministic point id of a page: the same page always maps to the same point."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{doc_hash}:{page}"))


def utc_now() -> str:
    """ISO-8601 UTC timestamp, the format of `PagePoint.indexed_at`."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class PagePoint:
    """One page to store. `visual` may be None (indexed without an encoder; fill later with `set_visual`).

    `sparse` None means "compute BM25 from `text` with the store's language" (the usual case); pass a
    `Sparse` to store a precomputed one. Empty text stores no sparse vector.
    """

    doc_hash: str
    doc_path: str
    page: int
    image_path: str = ""
    text: str = ""
    title: str = ""
    indexed_at: str = field(default_factory=utc_now)
    visual: np.ndarray | None = None
    sparse: Sparse | None = None

    @property
    def id(self) -> str:
        return point_id(self.doc_hash, self.page)

    def payload(self) -> dict[str, Any]:
        return {
            "doc_hash": self.doc_hash,
            "doc_path": self.doc_path,
            "page": int(self.page),
            "image_path": self.image_path,
            "text": self.text,
            "title": self.title,
            "indexed_at": self.indexed_at,
        }


@dataclass
class Hit:
    """One search result: a page and its score (cosine, BM25 or RRF depending on the mode)."""

    doc_path: str
    page: int
    score: float
    image_path: str
    text: str
    title: str
    doc_hash: str

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None, score: float) -> Hit:
        p = payload or {}
        return cls(
            doc_path=str(p.get("doc_path", "")),
            page=int(p.get("page", 0)),
            score=float(score),
            image_path=str(p.get("image_path", "")),
            text=str(p.get("text", "")),
            title=str(p.get("title", "")),
            doc_hash=str(p.get("doc_hash", "")),
        )


# A backend-neutral filter: each backend converts it into its own classes.
# Conditions: ("eq", key, value) | ("text", key, substring) | ("has_vector", name)
@dataclass(frozen=True)
class _Filter:
    must: tuple[tuple, ...] = ()
    should: tuple[tuple, ...] = ()
    must_not: tuple[tuple, ...] = ()


@dataclass
class _Record:
    """A point ready for a backend: id, dense list or None, sparse or None, payload."""

    id: str
    dense: list[float] | None
    sparse: Sparse | None
    payload: dict[str, Any]


def _doc_filter(doc_filter: str | None) -> _Filter | None:
    if not doc_filter:
        return None
    return _Filter(should=(("eq", "doc_hash", doc_filter), ("text", "doc_path", doc_filter)))


def _as_vector(v: Any, what: str) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} must be a 1-D vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


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

    def __init__(self, *, language: str, rrf_k: int = DEFAULT_RRF_K) -> None:
        self.language = language
        self.rrf_k = rrf_k
        self._bm25: Bm25Encoder = encoder(language)
        self._dim: int | None = None
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
    def _update_visual(self, vectors: dict[str, list[float]]) -> None: ...

    @abstractmethod
    def _scroll(self, flt: _Filter | None, limit: int, fields: list[str]) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _facet(self, key: str, limit: int) -> dict[str, int]: ...

    @abstractmethod
    def _search(
        self,
        mode: str,
        sparse: Sparse | None,
        dense: list[float] | None,
        flt: _Filter | None,
        top_k: int,
        prefetch_k: int,
    ) -> list[tuple[float, dict[str, Any]]]: ...

    @abstractmethod
    def _add_visual_vector(self, dim: int) -> None:
        """Create the `visual` dense vector (cosine, `dim`) on a store that has none, and record the dim."""

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
        dim = int(dim)
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        with self._lock:
            self._check_open()
            if self._dim is None:
                self._add_visual_vector(dim)
                self._dim = dim
            elif self._dim != dim:
                raise DimensionMismatch(self._dim, dim)

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
        sparse = p.sparse if p.sparse is not None else self._bm25.embed_document(p.text)
        return _Record(p.id, dense, None if sparse.is_empty else sparse, p.payload())

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
        if not page_vectors:
            return
        with self._lock:
            self._check_open()
            vectors: dict[str, list[float]] = {}
            pages: dict[str, int] = {}
            for page, v in page_vectors.items():
                vec = _as_vector(v, f"visual vector of {doc_hash} page {page}")
                self.ensure_dim(vec.shape[0])
                pid = point_id(doc_hash, int(page))
                vectors[pid] = vec.tolist()
                pages[pid] = int(page)
            missing = sorted(pages[i] for i in set(vectors) - self._existing_ids(list(vectors)))
            if missing:
                raise KeyError(f"document {doc_hash} has no stored page(s) {missing}")
            ids = list(vectors)
            for i in range(0, len(ids), self._upsert_batch):
                self._update_visual({k: vectors[k] for k in ids[i : i + self._upsert_batch]})

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
    ) -> list[Hit]:
        """Search pages. `visual` needs `vector`, `text` needs `text`, `hybrid` both (one fused query)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if top_k <= 0:
            return []
        need_text = mode in ("text", "hybrid")
        need_vec = mode in ("visual", "hybrid")
        if need_text and text is None:
            raise ValueError(f"mode {mode!r} needs a query text")
        if need_vec and vector is None:
            raise ValueError(f"mode {mode!r} needs a query vector")
        with self._lock:
            self._check_open()
            dense = None
            if need_vec:
                if self._dim is None:
                    raise StoreError("this index has no visual vectors (built without an encoder): use mode='text'")
                vec = _as_vector(vector, "query vector")
                if vec.shape[0] != self._dim:
                    raise DimensionMismatch(self._dim, vec.shape[0])
                dense = vec.tolist()
            sparse = self._bm25.embed_query(text or "") if need_text else None
            if mode == "text" and (sparse is None or sparse.is_empty):
                return []  # nothing left after stop words: no page can match
            if mode == "hybrid" and sparse is not None and sparse.is_empty:
                sparse = None  # fuse the dense side alone rather than send an empty sparse query
            rows = self._search(
                mode, sparse, dense, _doc_filter(doc_filter), int(top_k), max(int(prefetch_k), int(top_k))
            )
        return [Hit.from_payload(payload, score) for score, payload in rows]

    _schema_extra: dict[str, Any] = {}

    def _schema(self, created_at: str | None = None) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "dim": self._dim,
            "distance": "cosine",
            "sparse": "bm25",
            "bm25_language": self.language,
            "created_at": created_at or utc_now(),
            **self._schema_extra,
        }

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _check_schema(schema: dict[str, Any], where: str) -> None:
    version = schema.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise StoreError(f"{where} has schema version {version}, newer than this docrag ({SCHEMA_VERSION})")


def _resolve_language(stored: str | None, asked: str | None, where: str) -> str:
    if stored and asked and stored != asked:
        raise StoreError(f"{where} was built with BM25 language {stored!r}, not {asked!r}")
    return stored or asked or DEFAULT_LANGUAGE


# ==================================================================== Qdrant Edge


def _is_wal_busy(exc: BaseException) -> bool:
    msg = str(exc)
    return "WouldBlock" in msg or "failed to open WAL" in msg


class EdgeStore(Store):
    """Qdrant Edge shard in `path` (created on first use). One process at a time; see `indexing.lock`.

    Dense search is exact by default (`hnsw=False`: the `visual` vector gets HNSW m=0, i.e. no graph). At the
    sizes a local index reaches this is faster to build and no slower to search. Measured on 2 cores at 10k
    pages x 2048 dims (benchmarks/store_query.py): exact search p50 4.6 ms (hybrid 3.6 ms) at recall 1.0, and
    `optimize()` 1.1 s; with HNSW, `optimize()` took 34 s (holding the index, so blocking every search
    meanwhile) for p50 3.3 ms at recall@5 0.71 on random vectors (0.95 needs hnsw_ef=512, ~7 ms). An exact
    scan grows linearly (~40-50 ms expected at 100k pages); pass `hnsw=True` when creating a much larger
    index. The choice is fixed at creation and recorded in the schema file.
    """

    def __init__(
        self,
        path: Path | str,
        dim: int | None = None,
        *,
        language: str | None = None,
        open_timeout_s: float = 0.0,
        rrf_k: int = DEFAULT_RRF_K,
        hnsw: bool = False,
    ) -> None:
        import qdrant_edge as qe

        self._qe = self._models = qe
        self.path = Path(path)
        self._shard: Any = None
        schema_path = self.path / SCHEMA_FILE
        if (self.path / "edge_config.json").exists():
            schema: dict[str, Any] = {}
            if schema_path.exists():
                try:
                    schema = json.loads(schema_path.read_text(encoding="utf-8"))
                except ValueError as exc:
                    raise StoreError(f"{schema_path} is not valid JSON: {exc}") from exc
            _check_schema(schema, str(self.path))
            super().__init__(
                language=_resolve_language(schema.get("bm25_language"), language, str(self.path)), rrf_k=rrf_k
            )
            self._created_at = schema.get("created_at") or utc_now()
            self._schema_extra = {"dense_index": schema.get("dense_index", "exact")}
            self._shard = self._load(open_timeout_s)
            stored_dim = schema.get("dim")
            self._dim = int(stored_dim) if stored_dim else self._infer_dim()
            if not schema_path.exists():
                self._save_schema()
        else:
            super().__init__(language=language or DEFAULT_LANGUAGE, rrf_k=rrf_k)
            self._created_at = utc_now()
            self._schema_extra = {"dense_index": "hnsw" if hnsw else "exact"}
            # m=0: no HNSW graph, dense search is an exact scan (see the class docstring for why)
            hnsw_config = qe.HnswIndexConfig(m=16 if hnsw else 0, ef_construct=100, full_scan_threshold=10_000)
            vectors = None
            if dim:
                vectors = {
                    VISUAL: qe.EdgeVectorParams(
                        size=int(dim), distance=qe.Distance.Cosine, hnsw_config=hnsw_config, memory=qe.Memory.Cold
                    )
                }
            config = qe.EdgeConfig(
                vectors=vectors,
                sparse_vectors={TEXT: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
                hnsw_config=hnsw_config,  # also for a `visual` vector added later to a text-only shard
            )
            self.path.mkdir(parents=True, exist_ok=True)
            try:
                self._shard = qe.EdgeShard.create(str(self.path), config)
            except Exception as exc:
                if _is_wal_busy(exc):
                    raise self._busy() from None
                raise
            for key in ("doc_hash", "doc_path"):
                self._shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            self._dim = int(dim) if dim else None
            self._save_schema()
        if dim:
            try:
                self.ensure_dim(int(dim))
            except BaseException:
                self.close()  # release the shard: the caller gets the error, not a held-open index
                raise

    def _busy(self) -> IndexBusy:
        """IndexBusy for a shard another process has open, naming the holder if it left a `.lock.info`."""
        for d in (self.path.parent, self.path):
            info = read_holder(d)
            if info and pid_alive(info.get("pid")):
                return IndexBusy(self.path, describe_holder(d), info)
        return IndexBusy(self.path, "the Qdrant shard is open in another process (or another store in this one)")

    def _load(self, open_timeout_s: float) -> Any:
        deadline = time.monotonic() + max(0.0, open_timeout_s)
        while True:
            try:
                return self._qe.EdgeShard.load(str(self.path))
            except Exception as exc:
                if not _is_wal_busy(exc):
                    raise StoreError(f"cannot open the Qdrant Edge shard in {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise self._busy() from None
                time.sleep(0.05)

    def _infer_dim(self) -> int | None:
        """Dim from a stored vector, for a shard whose schema file went missing."""
        qe = self._qe
        flt = qe.Filter(must=[qe.HasVectorCondition(VISUAL)])
        try:
            records, _ = self._shard.scroll(qe.ScrollRequest(limit=1, filter=flt, with_payload=False, with_vector=True))
        except Exception:
            return None
        for r in records:
            v = (r.vector or {}).get(VISUAL) if isinstance(r.vector, dict) else None
            if v is not None:
                return len(v)
        return None

    def _save_schema(self) -> None:
        tmp = self.path / (SCHEMA_FILE + ".tmp")
        tmp.write_text(json.dumps(self._schema(self._created_at), indent=2), encoding="utf-8")
        tmp.replace(self.path / SCHEMA_FILE)

    @property
    def closed(self) -> bool:
        return self._shard is None

    # conversions
    def _cond(self, c: tuple) -> Any:
        qe = self._qe
        if c[0] == "eq":
            return qe.FieldCondition(c[1], match=qe.MatchValue(c[2]))
        if c[0] == "text":
            return qe.FieldCondition(c[1], match=qe.MatchText(c[2]))
        if c[0] == "has_vector":
            return qe.HasVectorCondition(c[1])
        raise ValueError(f"unknown condition {c!r}")

    def _sparse(self, s: Sparse) -> Any:
        return self._qe.SparseVector(s.indices, s.values)

    # primitives
    def _upsert_records(self, records: list[_Record]) -> None:
        qe = self._qe
        points = []
        for r in records:
            vec: dict[str, Any] = {}
            if r.dense is not None:
                vec[VISUAL] = r.dense
            if r.sparse is not None:
                vec[TEXT] = self._sparse(r.sparse)
            points.append(qe.Point(r.id, vec, r.payload))
        self._shard.update(qe.UpdateOperation.upsert_points(points))

    def _count(self, flt: _Filter | None) -> int:
        return int(self._shard.count(self._qe.CountRequest(exact=True, filter=self._filter(flt))))

    def _delete(self, flt: _Filter) -> None:
        self._shard.update(self._qe.UpdateOperation.delete_points_by_filter(self._filter(flt)))

    def _existing_ids(self, ids: list[str]) -> set[str]:
        return {str(r.id) for r in self._shard.retrieve(ids, False, False)}

    def _update_visual(self, vectors: dict[str, list[float]]) -> None:
        qe = self._qe
        pvs = [qe.PointVectors(pid, {VISUAL: v}) for pid, v in vectors.items()]
        self._shard.update(qe.UpdateOperation.update_vectors(pvs))

    def _scroll(self, flt: _Filter | None, limit: int, fields: list[str]) -> list[dict[str, Any]]:
        qe = self._qe
        out: list[dict[str, Any]] = []
        offset = None
        while len(out) < limit:
            req = qe.ScrollRequest(
                offset=offset,
                limit=min(1000, limit - len(out)),
                filter=self._filter(flt),
                with_payload=qe.PayloadSelector.Include(fields),
                with_vector=False,
            )
            records, offset = self._shard.scroll(req)
            out.extend(r.payload or {} for r in records)
            if offset is None or not records:
                break
        return out

    def _facet(self, key: str, limit: int) -> dict[str, int]:
        resp = self._shard.facet(self._qe.FacetRequest(key, limit=limit, exact=True))
        return {str(h.value): int(h.count) for h in resp if h.count > 0}  # deleted values linger with 0

    def _search(
        self,
        mode: str,
        sparse: Sparse | None,
        dense: list[float] | None,
        flt: _Filter | None,
        top_k: int,
        prefetch_k: int,
    ) -> list[tuple[float, dict[str, Any]]]:
        qe = self._qe
        f = self._filter(flt)
        if mode == "text":
            req = qe.QueryRequest(
                limit=top_k, query=qe.Query.Nearest(self._sparse(sparse), using=TEXT), filter=f, with_payload=True
            )
        elif mode == "visual":
            req = qe.QueryRequest(limit=top_k, query=qe.Query.Nearest(dense, using=VISUAL), filter=f, with_payload=True)
        else:
            prefetches = []
            if sparse is not None:
                prefetches.append(
                    qe.Prefetch(limit=prefetch_k, query=qe.Query.Nearest(self._sparse(sparse), using=TEXT), filter=f)
                )
            prefetches.append(qe.Prefetch(limit=prefetch_k, query=qe.Query.Nearest(dense, using=VISUAL), filter=f))
            req = qe.QueryRequest(
                limit=top_k, prefetches=prefetches, query=qe.Fusion.Rrf(k=self.rrf_k), filter=f, with_payload=True
            )
        return [(float(p.score), p.payload or {}) for p in self._shard.query(req)]

    def _add_visual_vector(self, dim: int) -> None:
        qe = self._qe
        self._shard.update(qe.UpdateOperation.create_dense_vector(VISUAL, int(dim), qe.Distance.Cosine))
        self._dim = int(dim)
        self._save_schema()

    def bytes_on_disk(self) -> int:
        return _disk_usage(self.path)

    def optimize(self) -> None:
        with self._lock:
            self._check_open()
            self._shard.optimize()

    def flush(self) -> None:
        """Make every write durable now (the WAL already protects them against a crash)."""
        with self._lock:
            self._check_open()
            self._shard.flush()

    def close(self) -> None:
        with self._lock:
            shard, self._shard = self._shard, None
            if shard is not None:
                shard.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


# ==================================================================== qdrant-client


class QdrantClientStore(Store):
    """A collection on a Qdrant server/cluster (`url`), or in qdrant-client's local mode (`path`, `location`)."""

    _upsert_batch = 64  # a 2048-d page is ~40 kB of JSON: keep requests well under the server's 32 MB

    def __init__(
        self,
        url: str | None = None,
        *,
        path: str | Path | None = None,
        location: str | None = None,
        api_key: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        dim: int | None = None,
        language: str | None = None,
        rrf_k: int = DEFAULT_RRF_K,
        timeout: int | None = None,
    ) -> None:
        from qdrant_client import QdrantClient, models

        if sum(x is not None for x in (url, path, location)) != 1:
            raise ValueError("give exactly one of url, path or location")
        self._m = self._models = models
        self.collection = collection
        self._path = Path(path) if path is not None else None
        self._remote = url is not None
        try:
            if url is not None:
                self._client = QdrantClient(url=url, api_key=api_key, timeout=timeout)
            elif path is not None:
                self._client = QdrantClient(path=str(path))
            else:
                self._client = QdrantClient(location=location)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise IndexBusy(path or location or "", "another process has the local Qdrant folder open") from None
            raise
        self._closed = False
        where = f"collection {collection!r}"
        if self._client.collection_exists(collection):
            info = self._client.get_collection(collection)
            params = info.config.params
            if TEXT not in (params.sparse_vectors or {}):
                raise StoreError(f"{where} exists but has no sparse vector {TEXT!r}: not a docrag collection")
            meta = (getattr(info.config, "metadata", None) or {}).get("docrag", {}) or {}
            _check_schema(meta, where)
            super().__init__(language=_resolve_language(meta.get("bm25_language"), language, where), rrf_k=rrf_k)
            self._created_at = meta.get("created_at") or utc_now()
            vectors = params.vectors if isinstance(params.vectors, dict) else {}
            self._dim = int(vectors[VISUAL].size) if VISUAL in vectors else None
        else:
            super().__init__(language=language or DEFAULT_LANGUAGE, rrf_k=rrf_k)
            self._created_at = utc_now()
            self._dim = int(dim) if dim else None
            vectors_config = (
                {VISUAL: models.VectorParams(size=int(dim), distance=models.Distance.COSINE)} if dim else {}
            )
            self._client.create_collection(
                collection,
                vectors_config=vectors_config,
                sparse_vectors_config={TEXT: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                metadata={"docrag": self._schema(self._created_at)},
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # local mode: "payload indexes have no effect"
                for key in ("doc_hash", "doc_path"):
                    self._client.create_payload_index(collection, key, models.PayloadSchemaType.KEYWORD)
        if dim:
            try:
                self.ensure_dim(int(dim))
            except BaseException:
                self.close()
                raise

    @property
    def closed(self) -> bool:
        return self._closed

    def _cond(self, c: tuple) -> Any:
        m = self._m
        if c[0] == "eq":
            return m.FieldCondition(key=c[1], match=m.MatchValue(value=c[2]))
        if c[0] == "text":
            # MatchText on a keyword field (no full-text index) is a substring match, on every server version
            return m.FieldCondition(key=c[1], match=m.MatchText(text=c[2]))
        if c[0] == "has_vector":
            return m.HasVectorCondition(has_vector=c[1])
        raise ValueError(f"unknown condition {c!r}")

    def _sparse(self, s: Sparse) -> Any:
        return self._m.SparseVector(indices=list(s.indices), values=list(s.values))

    def _upsert_records(self, records: list[_Record]) -> None:
        m = self._m
        points = []
        for r in records:
            vec: dict[str, Any] = {}
            if r.dense is not None:
                vec[VISUAL] = r.dense
            if r.sparse is not None:
                vec[TEXT] = self._sparse(r.sparse)
            points.append(m.PointStruct(id=r.id, vector=vec, payload=r.payload))
        self._client.upsert(self.collection, points=points, wait=True)

    def _count(self, flt: _Filter | None) -> int:
        return int(self._client.count(self.collection, count_filter=self._filter(flt), exact=True).count)

    def _delete(self, flt: _Filter) -> None:
        self._client.delete(
            self.collection, points_selector=self._m.FilterSelector(filter=self._filter(flt)), wait=True
        )

    def _existing_ids(self, ids: list[str]) -> set[str]:
        recs = self._client.retrieve(self.collection, ids=ids, with_payload=False, with_vectors=False)
        return {str(r.id) for r in recs}

    def _update_visual(self, vectors: dict[str, list[float]]) -> None:
        m = self._m
        pvs = [m.PointVectors(id=pid, vector={VISUAL: v}) for pid, v in vectors.items()]
        self._client.update_vectors(self.collection, points=pvs, wait=True)

    def _scroll(self, flt: _Filter | None, limit: int, fields: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = None
        while len(out) < limit:
            records, offset = self._client.scroll(
                self.collection,
                scroll_filter=self._filter(flt),
                limit=min(1000, limit - len(out)),
                offset=offset,
                with_payload=fields,
                with_vectors=False,
            )
            out.extend(r.payload or {} for r in records)
            if offset is None or not records:
                break
        return out

    def _facet(self, key: str, limit: int) -> dict[str, int]:
        resp = self._client.facet(self.collection, key=key, limit=limit, exact=True)
        return {str(h.value): int(h.count) for h in resp.hits if h.count > 0}

    def _search(
        self,
        mode: str,
        sparse: Sparse | None,
        dense: list[float] | None,
        flt: _Filter | None,
        top_k: int,
        prefetch_k: int,
    ) -> list[tuple[float, dict[str, Any]]]:
        m = self._m
        f = self._filter(flt)
        if mode == "text":
            res = self._client.query_points(
                self.collection, query=self._sparse(sparse), using=TEXT, query_filter=f, limit=top_k, with_payload=True
            )
        elif mode == "visual":
            res = self._client.query_points(
                self.collection, query=dense, using=VISUAL, query_filter=f, limit=top_k, with_payload=True
            )
        else:
            prefetch = []
            if sparse is not None:
                prefetch.append(m.Prefetch(query=self._sparse(sparse), using=TEXT, limit=prefetch_k, filter=f))
            prefetch.append(m.Prefetch(query=dense, using=VISUAL, limit=prefetch_k, filter=f))
            res = self._client.query_points(
                self.collection,
                prefetch=prefetch,
                query=m.RrfQuery(rrf=m.Rrf(k=self.rrf_k)),
                query_filter=f,
                limit=top_k,
                with_payload=True,
            )
        return [(float(p.score), p.payload or {}) for p in res.points]

    def _add_visual_vector(self, dim: int) -> None:
        m = self._m
        cfg = m.DenseVectorNameConfig(dense=m.DenseVectorConfig(size=int(dim), distance=m.Distance.COSINE))
        self._client.create_vector_name(self.collection, VISUAL, cfg)
        self._dim = int(dim)
        self._client.update_collection(self.collection, metadata={"docrag": self._schema(self._created_at)})

    def bytes_on_disk(self) -> int:
        return _disk_usage(self._path) if self._path is not None else 0

    def optimize(self) -> None:
        """No-op: a server optimizes by itself; local mode has no indexes."""
        self._check_open()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()


# ==================================================================== factories


def open_store(
    index_dir: Path | str,
    dim: int | None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    *,
    language: str | None = None,
    open_timeout_s: float = 0.0,
    hnsw: bool = False,
) -> Store:
    """The index's store: Qdrant Edge under `index_dir/qdrant`, or the `collection` on `qdrant_url`.

    `qdrant_url=":memory:"` gives qdrant-client's in-memory mode (scratch runs); `file:/some/dir` its local,
    on-disk mode (the client code path without a server, for tests; one process at a time, brute force).
    `hnsw` only matters when an Edge shard is created (see `EdgeStore`).
    """
    if qdrant_url:
        if qdrant_url == ":memory:":
            return QdrantClientStore(location=":memory:", collection=collection, dim=dim, language=language)
        if qdrant_url.startswith("file:"):
            local = qdrant_url.removeprefix("file://") if qdrant_url.startswith("file://") else qdrant_url[5:]
            return QdrantClientStore(path=local, collection=collection, dim=dim, language=language)
        return QdrantClientStore(qdrant_url, api_key=api_key, collection=collection, dim=dim, language=language)
    return EdgeStore(Path(index_dir) / "qdrant", dim, language=language, open_timeout_s=open_timeout_s, hnsw=hnsw)


@contextlib.contextmanager
def locked_store(
    index_dir: Path | str,
    dim: int | None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    *,
    command: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    language: str | None = None,
) -> Iterator[Store]:
    """`with locked_store(d, dim, command="docrag search") as s:` — lock, open, use, close, unlock.

    The lock is taken only for the Edge backend (a server arbitrates concurrent clients itself).
    Raises `IndexBusy` after `timeout_s` when another process holds the index.
    """
    lock = None if qdrant_url else IndexLock(index_dir, command=command, timeout_s=timeout_s)
    if lock is not None:
        lock.acquire()
    try:
        store = open_store(index_dir, dim, qdrant_url, api_key, collection, language=language, open_timeout_s=timeout_s)
        try:
            yield store
        finally:
            store.close()
    finally:
        if lock is not None:
            lock.release()

"""qdrant-client: a Qdrant server or cluster, or qdrant-client's local mode (tests)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from indexing.bm25 import DEFAULT_LANGUAGE, Sparse
from indexing.lock import IndexBusy

from .base import DEFAULT_COLLECTION, DEFAULT_RRF_K, Store, _disk_usage
from .points import TEXT, TEXT_DENSE, VISUAL, _Filter, _Record, utc_now
from .schema import StoreError, check_schema, resolve_cjk, resolve_language


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


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
                # No compatibility check: qdrant-client runs it in a daemon thread whose warning races the
                # process's exit and breaks docrag's one-line errors (an unreachable server is reported below).
                self._client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
            elif path is not None:
                self._client = QdrantClient(path=str(path))
            else:
                self._client = QdrantClient(location=location)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise IndexBusy(path or location or "", "another process has the local Qdrant folder open") from None
            if url is not None:
                raise StoreError(f"cannot use Qdrant at {url}: {_one_line(exc)}") from None
            raise
        except ValueError as exc:  # e.g. a malformed URL
            if url is None:
                raise
            raise StoreError(f"cannot use Qdrant at {url}: {_one_line(exc)}") from None
        self._closed = False
        where = f"collection {collection!r}"
        try:
            exists = self._client.collection_exists(collection)
        except Exception as exc:  # httpx/grpc errors wrapped by qdrant-client: one line naming the URL
            if not self._remote:
                raise
            self._client.close()
            raise StoreError(f"cannot reach Qdrant at {url}: {_one_line(exc)}") from None
        if exists:
            info = self._client.get_collection(collection)
            params = info.config.params
            if TEXT not in (params.sparse_vectors or {}):
                raise StoreError(f"{where} exists but has no sparse vector {TEXT!r}: not a docrag collection")
            meta = (getattr(info.config, "metadata", None) or {}).get("docrag", {}) or {}
            check_schema(meta, where)
            super().__init__(language=resolve_language(meta.get("bm25_language"), language, where), rrf_k=rrf_k,
                             cjk=resolve_cjk(meta, exists=True))
            self._created_at = meta.get("created_at") or utc_now()
            vectors = params.vectors if isinstance(params.vectors, dict) else {}
            self._dim = int(vectors[VISUAL].size) if VISUAL in vectors else None
            self._text_dim = int(vectors[TEXT_DENSE].size) if TEXT_DENSE in vectors else None
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
        if c[0] == "any":
            return m.FieldCondition(key=c[1], match=m.MatchAny(any=list(c[2])))
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
            if r.text_dense is not None:
                vec[TEXT_DENSE] = r.text_dense
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

    def _update_vectors(self, name: str, vectors: dict[str, list[float]]) -> None:
        m = self._m
        pvs = [m.PointVectors(id=pid, vector={name: v}) for pid, v in vectors.items()]
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
        sources: list[tuple[str, Sparse | list[float]]],
        fuse: bool,
        flt: _Filter | None,
        top_k: int,
        prefetch_k: int,
        rrf_k: int,
        weights: list[float] | None,
    ) -> list[tuple[float, dict[str, Any]]]:
        m = self._m
        f = self._filter(flt)

        def vec(q: Sparse | list[float]) -> Any:
            return self._sparse(q) if isinstance(q, Sparse) else q

        if not fuse:
            (using, q), = sources
            res = self._client.query_points(
                self.collection, query=vec(q), using=using, query_filter=f, limit=top_k, with_payload=True
            )
        else:
            res = self._client.query_points(
                self.collection,
                prefetch=[m.Prefetch(query=vec(q), using=using, limit=prefetch_k, filter=f) for using, q in sources],
                query=m.RrfQuery(rrf=m.Rrf(k=rrf_k, weights=weights)),
                query_filter=f,
                limit=top_k,
                with_payload=True,
            )
        return [(float(p.score), p.payload or {}) for p in res.points]

    def _add_dense_vector(self, name: str, dim: int) -> None:
        m = self._m
        cfg = m.DenseVectorNameConfig(dense=m.DenseVectorConfig(size=int(dim), distance=m.Distance.COSINE))
        self._client.create_vector_name(self.collection, name, cfg)
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



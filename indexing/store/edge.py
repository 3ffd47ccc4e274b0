"""Qdrant Edge: the real Rust engine embedded in-process, persistent in a folder (the default backend)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from indexing.bm25 import DEFAULT_LANGUAGE, Sparse
from indexing.lock import IndexBusy, describe_holder, pid_alive, read_holder

from .base import DEFAULT_RRF_K, Store, _disk_usage
from .points import TEXT, TEXT_DENSE, VISUAL, _Filter, _Record, utc_now
from .schema import SCHEMA_FILE, StoreError, check_schema, resolve_cjk, resolve_language


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
            check_schema(schema, str(self.path))
            super().__init__(
                language=resolve_language(schema.get("bm25_language"), language, str(self.path)), rrf_k=rrf_k,
                cjk=resolve_cjk(schema, exists=True),
            )
            self._created_at = schema.get("created_at") or utc_now()
            self._schema_extra = {"dense_index": schema.get("dense_index", "exact")}
            self._shard = self._load(open_timeout_s)
            stored_dim = schema.get("dim")
            self._dim = int(stored_dim) if stored_dim else self._infer_dim()
            self._text_dim = int(schema["text_dim"]) if schema.get("text_dim") else None
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
        if c[0] == "any":
            return qe.FieldCondition(c[1], match=qe.MatchAny(list(c[2])))
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
            if r.text_dense is not None:
                vec[TEXT_DENSE] = r.text_dense
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

    def _update_vectors(self, name: str, vectors: dict[str, list[float]]) -> None:
        qe = self._qe
        pvs = [qe.PointVectors(pid, {name: v}) for pid, v in vectors.items()]
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
        sources: list[tuple[str, Sparse | list[float]]],
        fuse: bool,
        flt: _Filter | None,
        top_k: int,
        prefetch_k: int,
        rrf_k: int,
        weights: list[float] | None,
    ) -> list[tuple[float, dict[str, Any]]]:
        qe = self._qe
        f = self._filter(flt)

        def nearest(using: str, q: Sparse | list[float]) -> Any:
            return qe.Query.Nearest(self._sparse(q) if isinstance(q, Sparse) else q, using=using)

        if not fuse:
            (using, q), = sources
            req = qe.QueryRequest(limit=top_k, query=nearest(using, q), filter=f, with_payload=True)
        else:
            prefetches = [qe.Prefetch(limit=prefetch_k, query=nearest(using, q), filter=f) for using, q in sources]
            req = qe.QueryRequest(limit=top_k, prefetches=prefetches, query=qe.Fusion.Rrf(k=rrf_k, weights=weights),
                                  filter=f, with_payload=True)
        return [(float(p.score), p.payload or {}) for p in self._shard.query(req)]

    def _add_dense_vector(self, name: str, dim: int) -> None:
        qe = self._qe
        self._shard.update(qe.UpdateOperation.create_dense_vector(name, int(dim), qe.Distance.Cosine))
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



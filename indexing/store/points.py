"""What the store holds and gives back: page points, hits, their ids, and the backend-neutral filter and record."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from indexing.bm25 import Sparse

VISUAL = "visual"
TEXT = "text"
TEXT_DENSE = "text_dense"  # optional dense vector of the page text (a sentence-transformers model)
PAYLOAD_FIELDS = ("doc_hash", "doc_path", "page", "image_path", "text", "title", "indexed_at", "text_source")
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "docrag:page")

Mode = Literal["visual", "text", "dense", "hybrid"]
MODES: tuple[str, ...] = ("visual", "text", "dense", "hybrid")
# Fusion sources, in prefetch order, and the vector each one searches.
SOURCES: dict[str, str] = {"text": TEXT, "dense": TEXT_DENSE, "visual": VISUAL}


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
    `Sparse` to store a precomputed one. Empty text stores no sparse vector. `text_source` says where `text`
    came from: "layer" (the PDF's text layer) or "ocr" (then `ocr_engine` names engine, version, languages).
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
    text_dense: np.ndarray | None = None
    text_source: str = "layer"
    ocr_engine: str = ""

    @property
    def id(self) -> str:
        return point_id(self.doc_hash, self.page)

    def payload(self) -> dict[str, Any]:
        extra = {"ocr_engine": self.ocr_engine} if self.ocr_engine else {}
        return extra | {
            "doc_hash": self.doc_hash,
            "doc_path": self.doc_path,
            "page": int(self.page),
            "image_path": self.image_path,
            "text": self.text,
            "title": self.title,
            "indexed_at": self.indexed_at,
            "text_source": self.text_source,
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
    text_source: str = "layer"
    # Every path with this content now (copies), when resolved through the manifest (`indexing.resolve`); the
    # payload's `doc_path` alone is the path the page was first stored under.
    doc_paths: list[str] = field(default_factory=list)
    # A short passage around the query's matched terms, **marked** (`indexing.snippets`; filled in by the search).
    snippet: str = ""
    matched_terms: list[str] = field(default_factory=list)
    # Where the matched terms are on the page: [{box: [x0, y0, x1, y1] in 0-1 of the page, term}] (`app.highlights`),
    # and, when there are none, why (no matched term, or no word boxes for the page yet).
    highlights: list[dict[str, Any]] = field(default_factory=list)
    highlights_note: str = ""

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
            text_source=str(p.get("text_source", "layer")),
            doc_paths=[str(p.get("doc_path", ""))],
        )


# A backend-neutral filter: each backend converts it into its own classes.
# Conditions: ("eq", key, value) | ("any", key, values) | ("text", key, substring) | ("has_vector", name)
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
    text_dense: list[float] | None = None


def _doc_filter(doc_filter: str | None, doc_hashes: Sequence[str] | None = None) -> _Filter | None:
    must = (("any", "doc_hash", tuple(doc_hashes)),) if doc_hashes is not None else ()
    if not doc_filter:
        return _Filter(must=must) if must else None
    return _Filter(must=must, should=(("eq", "doc_hash", doc_filter), ("text", "doc_path", doc_filter)))


def _as_vector(v: Any, what: str) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} must be a 1-D vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr

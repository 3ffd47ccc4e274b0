"""The optional dense text vector of a page (`text_dense`): the protocol an encoder meets, and its backfill.

indexing never imports a model: a text encoder (app.textenc's sentence-transformers wrapper is one) comes in
through `TextEmbedder`. Pages without text get no vector (an empty string's embedding would be the same
meaningless point for every blank page). A run with a text encoder first embeds the pages it indexes, then
`backfill_text_dense` gives the vector to every stored page lacking it, from the text already in the store:
nothing is re-rendered or OCR'd again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # the render workers import this module: no Qdrant there
    from .store import Store

BACKFILL_SCAN_LIMIT = 1_000_000


class TextEmbedder(Protocol):
    """What the indexer needs of a text encoder: a name (recorded), a dimension, document-side embeddings."""

    name: str

    @property
    def dim(self) -> int: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per page text (long texts chunked and pooled by the encoder)."""
        ...


def worker_factory(embedder: TextEmbedder | None) -> Callable[[], TextEmbedder] | None:
    """How a render worker builds its own copy of ``embedder``, if it offers one: ``for_workers()``, a
    picklable, hashable callable (a spawned worker builds it once). Without it, the writer process embeds."""
    for_workers = getattr(embedder, "for_workers", None)
    return for_workers() if callable(for_workers) else None


def embed_page_texts(embedder: TextEmbedder, texts: Sequence[str]) -> list[np.ndarray | None]:
    """Text vectors for a batch of pages, None for a page without text."""
    out: list[np.ndarray | None] = [None] * len(texts)
    idx = [i for i, t in enumerate(texts) if t and t.strip()]
    if idx:
        vectors = embedder.encode_texts([texts[i] for i in idx])
        for i, vec in zip(idx, vectors, strict=True):
            out[i] = vec
    return out


def backfill_text_dense(
    writing: Callable[[], AbstractContextManager[Store]],
    embedder: TextEmbedder,
    batch: int = 16,
    on_start: Callable[[int], None] = lambda n: None,
    on_pages: Callable[[int], None] = lambda n: None,
) -> int:
    """Embed the stored text of every page lacking `text_dense`; returns how many pages got one.

    `writing()` opens the store for one short write (the indexer's `StoreSession.writing`, which lets a waiting
    reader in between writes); the encoder runs outside it. `on_start(total)` and `on_pages(n)` report progress.
    """
    with writing() as store:
        missing = store.pages_missing_text_dense(limit=BACKFILL_SCAN_LIMIT)
    if missing:
        on_start(len(missing))
    added = 0
    for i in range(0, len(missing), batch):
        chunk = missing[i : i + batch]
        vectors = embedder.encode_texts([text for _, _, text in chunk])
        by_doc: dict[str, dict[int, np.ndarray]] = {}
        for (doc_hash, page, _), vec in zip(chunk, vectors, strict=True):
            by_doc.setdefault(doc_hash, {})[page] = vec
        with writing() as store:
            for doc_hash, page_vectors in by_doc.items():
                store.set_text_dense(doc_hash, page_vectors)
        added += len(chunk)
        on_pages(len(chunk))
    return added

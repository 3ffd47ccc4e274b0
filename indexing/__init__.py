"""docrag's bottom layer: files -> pages -> store. Imports nothing from `app`, `moca_train` or `ui`.

Modules: `scan` (files, hashes), `render` (PDFs and images -> pages), `extract` and `workers` (rendering in
worker processes), `pages` (the full page-image store), `thumbnails`, `page_images` (page images on demand),
`ocr` (text for pages without a usable text layer), `tokenize` (CJK bigrams for BM25), `bm25` (sparse text
vectors), `text_dense` (the optional dense text vector's protocol and backfill), `store` (the Qdrant store and
its process model), `lock` (the index lock), `manifest` (what is indexed), `plan` (what a run must do),
`resolve` (current paths of hits), `pipeline` (the incremental indexer that ties them together) and `run` (its
options, progress events and report).
"""

import importlib
from typing import TYPE_CHECKING, Any

# Public names, loaded on first use: `import indexing.lock` (every CLI call) must not pay for PyMuPDF,
# numpy and the Qdrant engine.
_EXPORTS = {
    "bm25": ("Bm25Encoder", "Sparse"),
    "lock": ("IndexBusy", "IndexLock"),
    "manifest": ("MANIFEST_NAME", "DocumentRecord", "Manifest", "NoIndex"),
    "ocr": ("OcrEngine", "PageOcr", "PageText", "text_layer_usable"),
    "resolve": ("filter_hashes", "with_current_paths"),
    "pages": ("PageStore",),
    "page_images": ("PageImages", "PageUnavailable", "page_images"),
    "pipeline": ("Indexer",),
    "run": ("Embedder", "EmbedderUnavailable", "Events", "IndexOptions", "IndexReport"),
    "render": ("DocumentError", "Page", "PageProblem", "RenderDocument", "Renderer", "document_title", "make_renderer"),
    "scan": ("SourceFile", "sha256_file"),  # the function `scan` would clash with the module
    "text_dense": ("TextEmbedder",),
    "store": ("DimensionMismatch", "EdgeStore", "Hit", "PagePoint", "QdrantClientStore", "Store", "StoreError",
              "WriterBusy", "locked_store", "open_store"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [
    "Bm25Encoder", "DimensionMismatch", "DocumentError", "DocumentRecord", "EdgeStore", "Embedder",
    "EmbedderUnavailable", "Events", "Hit", "IndexBusy", "IndexLock", "IndexOptions", "IndexReport", "Indexer",
    "MANIFEST_NAME", "Manifest", "NoIndex", "OcrEngine", "Page", "PageImages", "PageOcr", "PagePoint",
    "PageProblem", "PageStore", "PageText", "PageUnavailable", "QdrantClientStore", "RenderDocument", "Renderer",
    "SourceFile", "Sparse", "Store", "StoreError", "TextEmbedder", "WriterBusy", "document_title", "filter_hashes",
    "locked_store", "make_renderer", "open_store", "page_images", "sha256_file", "text_layer_usable",
    "with_current_paths",
]  # = sorted(_MODULE_OF), spelled out for linters


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'indexing' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


if TYPE_CHECKING:
    from .bm25 import Bm25Encoder, Sparse
    from .lock import IndexBusy, IndexLock
    from .manifest import MANIFEST_NAME, DocumentRecord, Manifest, NoIndex
    from .ocr import OcrEngine, PageOcr, PageText, text_layer_usable
    from .page_images import PageImages, PageUnavailable, page_images
    from .pages import PageStore
    from .pipeline import Indexer
    from .render import DocumentError, Page, PageProblem, RenderDocument, Renderer, document_title, make_renderer
    from .resolve import filter_hashes, with_current_paths
    from .run import Embedder, EmbedderUnavailable, Events, IndexOptions, IndexReport
    from .scan import SourceFile, sha256_file
    from .store import (
        DimensionMismatch,
        EdgeStore,
        Hit,
        PagePoint,
        QdrantClientStore,
        Store,
        StoreError,
        WriterBusy,
        locked_store,
        open_store,
    )
    from .text_dense import TextEmbedder


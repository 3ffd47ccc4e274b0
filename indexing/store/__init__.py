"""The vector store: what is stored (`points`, `schema`), one `Store` interface (`base`), two Qdrant backends
(`edge`, `server`), and how they are opened and shared (`session`, `shared`).

* `EdgeStore`: Qdrant Edge, the real Rust engine embedded in-process, persistent in a folder (the default,
  `index_dir / "qdrant"`). One process at a time: see `indexing.lock` for the process model (short-lived
  opens under `IndexLock`); `locked_store` bundles the two.
* `QdrantClientStore`: qdrant-client, for a Qdrant server or cluster (`url`, API key from the caller, which
  reads `QDRANT_API_KEY`), or its local pure-Python mode (`location=":memory:"`, `path=`) used in tests.

One point per page, id `uuid5(doc_hash:page)`, so re-indexing a page overwrites it and never duplicates it.
Vectors: dense `visual` (cosine, one vector per page from the vision-language encoder), sparse `text`
(BM25 term frequencies of the page's text layer or OCR text, IDF applied by the engine; CJK runs as
character bigrams, see `indexing.tokenize`) and, optionally, dense `text_dense` (cosine, a sentence-
transformers model over the page text; its dim is recorded as `text_dim`). Payload: doc_hash, doc_path,
page, image_path, text, title, indexed_at, text_source ("layer" | "ocr") and, for OCR text, ocr_engine, with
keyword indexes on doc_hash and doc_path.

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

Paths: a page is stored once per content hash, and its payload's `doc_path` is the path it was first stored
under. Copies, renames and removals change only the manifest, so readers resolve current paths from it
(`indexing.resolve`): `query(doc_hashes=...)` keeps only those documents (what `--filter doc=` becomes), and
hits get the manifest's paths for their hash. `doc_filter` matches the payload itself (the doc_hash, or a
substring of the first-stored path) and is kept for callers without a manifest.

Hybrid search is ONE Qdrant query: one prefetch per source given (BM25 on `text`, `text_dense`, `visual`),
fused by weighted reciprocal rank fusion in the engine (k=60 and equal weights by default, set explicitly so
both backends rank alike; Qdrant scores a source's 1-based rank r as 1/(k - 1 + r/weight)).
"""

from .base import DEFAULT_COLLECTION, DEFAULT_RRF_K, Store
from .edge import EdgeStore
from .points import MODES, PAYLOAD_FIELDS, SOURCES, TEXT, TEXT_DENSE, VISUAL, Hit, Mode, PagePoint, point_id, utc_now
from .schema import SCHEMA_FILE, SCHEMA_VERSION, DimensionMismatch, StoreError
from .server import QdrantClientStore
from .session import (
    OPTIMIZE_EVERY_PAGES,
    WRITER_LOCK,
    StoreSession,
    StoreSettings,
    WriterBusy,
    WriterLock,
    locked_store,
    open_store,
)
from .shared import SharedStore

__all__ = [
    "DEFAULT_COLLECTION", "DEFAULT_RRF_K", "MODES", "OPTIMIZE_EVERY_PAGES", "PAYLOAD_FIELDS", "SCHEMA_FILE",
    "SCHEMA_VERSION", "SOURCES", "TEXT", "TEXT_DENSE", "VISUAL", "WRITER_LOCK", "DimensionMismatch", "EdgeStore",
    "Hit", "Mode", "PagePoint", "QdrantClientStore", "SharedStore", "Store", "StoreError", "StoreSession",
    "StoreSettings",
    "WriterBusy", "WriterLock", "locked_store", "open_store", "point_id", "utc_now",
]

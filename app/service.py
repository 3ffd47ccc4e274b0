"""DocRag: the one place where an encoder, the indexer and the store meet (CLI, UI, LangChain use it)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from indexing.manifest import COMPLETE, MANIFEST_NAME, Manifest
from indexing.pipeline import Events, Indexer, IndexOptions, IndexReport
from indexing.store import Hit, locked_store

from .config import Config, load_config

MODES = ("visual", "text", "hybrid")
ENCODER_META = "encoder"  # manifest key: the encoder the index's visual vectors came from


class EncoderUnavailable(RuntimeError):
    pass


class DocRag:
    """Index, search (and later ask) over one index folder, as configured."""

    def __init__(self, config: Config | None = None, encoder: Any | None = None) -> None:
        self.config = config or load_config()
        self._encoder = encoder
        self._encoder_resolved = encoder is not None
        self.notes: list[str] = []  # one-line notices for the user (e.g. "text layer only")

    # ---- encoder -----------------------------------------------------------------------------
    def _manifest(self) -> Manifest | None:
        """The index's manifest, or None before anything was indexed (reading must not create one)."""
        return Manifest(self.config.index_dir) if (self.config.index_dir / MANIFEST_NAME).exists() else None

    def recorded_encoder(self) -> str | None:
        """The encoder the index's visual vectors came from (None for a text-only index)."""
        manifest = self._manifest()
        if manifest is None:
            return None
        with manifest:
            return manifest.get_meta(ENCODER_META)

    def encoder(self, for_query: bool = False):
        """The configured encoder, loaded once; None means text-only.

        ``auto``: the encoder this index was built with, else the configured default model when a GPU
        is present, else none (text layer only; says so in ``notes``).
        """
        if self._encoder_resolved:
            return self._encoder
        self._encoder_resolved = True
        choice = self.config.encoder
        if choice == "none":
            return None
        if choice == "auto":
            # The index's own encoder if it has one (queries must be embedded by the model that embedded
            # the pages); otherwise the default MoCa model, but only where it can run at a usable speed.
            recorded = self.recorded_encoder()
            if recorded:
                choice = recorded
            else:
                import torch

                if not torch.cuda.is_available():
                    if not for_query:
                        self.notes.append("no GPU and no --encoder: indexing the text layer only "
                                          "(pass --encoder PATH to embed page images)")
                    return None
                choice = self.config.auto_encoder
        self._encoder = self._load_encoder(choice)
        return self._encoder

    def _load_encoder(self, name: str):
        from moca_train.checkpoint import CheckpointError
        from moca_train.modeling import MoCaEncoder

        try:
            return MoCaEncoder.from_pretrained(
                name, processor=self.config.processor, device=self.config.device, dtype=self.config.dtype,
                token_budget=self.config.token_budget,
            )
        except (CheckpointError, OSError) as e:
            raise EncoderUnavailable(str(e).splitlines()[0]) from e

    # ---- index -------------------------------------------------------------------------------
    def index_options(self, command: str = "docrag index") -> IndexOptions:
        c = self.config
        return IndexOptions(renderer=c.renderer, dpi=c.dpi, max_pixels=c.max_page_pixels, page_format=c.page_format,
                            batch_pages=c.batch_pages, lock_timeout_s=c.lock_timeout_s, qdrant_url=c.qdrant_url,
                            api_key=c.qdrant_api_key, collection=c.qdrant_collection, command=command,
                            bm25_language=c.bm25_language)

    def index(self, paths: list[str | Path], prune: bool = False, events: Events | None = None) -> IndexReport:
        encoder = self.encoder()
        if encoder is not None:
            recorded = self.recorded_encoder()
            if recorded and recorded != encoder.name:
                self.notes.append(f"index was built with encoder {recorded}; now using {encoder.name}")
        report = Indexer(self.config.index_dir, encoder, self.index_options(), events).sync(paths, prune=prune)
        if encoder is not None:
            with Manifest(self.config.index_dir) as manifest:
                manifest.set_meta(ENCODER_META, encoder.name)
        return report

    def delete(self, path: str | Path) -> int:
        return Indexer(self.config.index_dir, None, self.index_options("docrag delete")).delete(path)

    # ---- search ------------------------------------------------------------------------------
    def _store(self, command: str):
        c = self.config
        return locked_store(c.index_dir, None, c.qdrant_url, c.qdrant_api_key, c.qdrant_collection,
                            command=command, timeout_s=c.lock_timeout_s)

    def search(self, query: str, top_k: int | None = None, mode: str | None = None,
               doc: str | None = None) -> list[Hit]:
        """Top pages for ``query``: visual (encoder), text (BM25) or hybrid (both, fused by RRF)."""
        if not query.strip():
            raise ValueError("empty query")
        mode = mode or self.config.mode
        if mode not in (*MODES, "auto"):
            raise ValueError(f"unknown mode {mode!r}; choose visual, text, hybrid or auto")
        top_k = top_k or self.config.top_k
        has_visual = self._has_visual()
        if mode == "auto":
            mode = "hybrid" if has_visual and self.encoder(for_query=True) is not None else "text"
        vector = None
        if mode in ("visual", "hybrid"):
            if not has_visual:
                raise EncoderUnavailable("this index has no visual vectors (it was built without an encoder); "
                                         "use --mode text, or re-run `docrag index --encoder PATH`")
            encoder = self.encoder(for_query=True)
            if encoder is None:
                raise EncoderUnavailable("visual search needs the encoder the index was built with "
                                         f"({self.recorded_encoder() or 'unknown'}); pass --encoder")
            vector = encoder.encode_queries([query])[0]
        with self._store("docrag search") as store:
            return store.query(text=query, vector=vector, mode=mode, top_k=top_k, doc_filter=doc)

    def _has_visual(self) -> bool:
        manifest = self._manifest()
        if manifest is None:
            return False
        with manifest:
            return manifest.has_visual()

    # ---- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        c = self.config
        docs, encoder = [], None
        manifest = self._manifest()
        if manifest is not None:
            with manifest:
                docs = list(manifest.documents())
                encoder = manifest.get_meta(ENCODER_META)
        pages = visual = store_bytes = 0
        if docs or c.qdrant_url:
            with self._store("docrag status") as store:
                pages, visual, store_bytes = store.count(), store.count_with_visual(), store.bytes_on_disk()
        from indexing.pages import PageStore

        return {
            "index_dir": str(c.index_dir),
            "backend": "qdrant-server" if c.qdrant_url else "qdrant-edge",
            "documents": sum(d.status == COMPLETE for d in docs),
            "pending": sum(d.status != COMPLETE for d in docs),
            "pages": pages,
            "pages_with_visual": visual,
            "store_bytes": store_bytes,
            "page_image_bytes": PageStore(c.index_dir, fmt=c.page_format).bytes_used(),
            "encoder": encoder,
        }


def hit_to_dict(hit: Hit, index_dir: Path, text_chars: int = 300) -> dict[str, Any]:
    d = asdict(hit)
    return {"doc": d["doc_path"], "page": d["page"], "score": round(float(d["score"]), 6),
            "image": str(index_dir / d["image_path"]), "text": (d.get("text") or "")[:text_chars],
            "title": d.get("title", "")}

"""DocRag: the one place where an encoder, the indexer and the store meet (CLI, UI, LangChain use it)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from indexing.manifest import COMPLETE, MANIFEST_NAME, Manifest
from indexing.pipeline import Events, Indexer, IndexOptions, IndexReport
from indexing.store import Hit, locked_store

from .config import Config, load_config

MODES = ("visual", "text", "dense", "hybrid")
ENCODER_META = "encoder"  # manifest key: the encoder the index's visual vectors came from
TEXT_ENCODER_META = "text_encoder"  # manifest key: the text encoder of the index's `text_dense` vectors


class EncoderUnavailable(RuntimeError):
    pass


class DocRag:
    """Index, search (and later ask) over one index folder, as configured."""

    def __init__(self, config: Config | None = None, encoder: Any | None = None) -> None:
        self.config = config or load_config()
        self._encoder = encoder
        self._encoder_resolved = encoder is not None
        self._text_encoder: Any | None = None
        self._text_encoder_resolved = False
        self.notes: list[str] = []  # one-line notices for the user (e.g. "text layer only")

    # ---- encoder -----------------------------------------------------------------------------
    def _manifest(self) -> Manifest | None:
        """The index's manifest, or None before anything was indexed (reading must not create one)."""
        return Manifest(self.config.index_dir) if (self.config.index_dir / MANIFEST_NAME).exists() else None

    def recorded_encoder(self, key: str = ENCODER_META) -> str | None:
        """The encoder the index's visual vectors came from (None for a text-only index); `key` for another."""
        manifest = self._manifest()
        if manifest is None:
            return None
        with manifest:
            return manifest.get_meta(key)

    def text_encoder(self):
        """The dense text encoder (``text_encoder``: none, auto = the index's own, a folder or hub id), or None."""
        if self._text_encoder_resolved:
            return self._text_encoder
        self._text_encoder_resolved = True
        choice = self.config.text_encoder
        if choice == "auto":
            choice = self.recorded_encoder(TEXT_ENCODER_META) or "none"
        if choice == "none":
            return None
        from .textenc import SentenceTextEncoder, TextEncoderUnavailable

        try:
            self._text_encoder = SentenceTextEncoder(choice, device=self.config.device)
        except TextEncoderUnavailable as e:
            raise EncoderUnavailable(str(e)) from e
        return self._text_encoder

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
                            bm25_language=c.bm25_language, ocr=c.ocr, ocr_lang=c.ocr_lang, ocr_engine=c.ocr_engine,
                            ocr_workers=c.ocr_workers)

    def index(self, paths: list[str | Path], prune: bool = False, events: Events | None = None) -> IndexReport:
        encoder = self.encoder()
        if encoder is not None:
            recorded = self.recorded_encoder()
            if recorded and recorded != encoder.name:
                self.notes.append(f"index was built with encoder {recorded}; now using {encoder.name}")
        text_encoder = self.text_encoder()
        if text_encoder is not None:
            recorded = self.recorded_encoder(TEXT_ENCODER_META)
            if recorded and recorded != text_encoder.name:
                raise EncoderUnavailable(f"index's text vectors come from {recorded}, not {text_encoder.name}: "
                                         "use that --text-encoder, or a new index folder")
        report = Indexer(self.config.index_dir, encoder, self.index_options(), events,
                         text_embedder=text_encoder).sync(paths, prune=prune)
        with Manifest(self.config.index_dir) as manifest:
            if encoder is not None:
                manifest.set_meta(ENCODER_META, encoder.name)
            if text_encoder is not None:
                manifest.set_meta(TEXT_ENCODER_META, text_encoder.name)
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
        """Top pages for ``query``: text (BM25), dense (text encoder), visual (encoder), or hybrid: every source
        the index has, fused by weighted RRF in one Qdrant query."""
        if not query.strip():
            raise ValueError("empty query")
        mode = mode or self.config.mode
        if mode not in (*MODES, "auto"):
            raise ValueError(f"unknown mode {mode!r}; choose visual, text, dense, hybrid or auto")
        top_k = top_k or self.config.top_k
        has_visual = self._has_visual()
        has_dense = self.recorded_encoder(TEXT_ENCODER_META) is not None
        if mode == "auto":
            visual_ok = has_visual and self.encoder(for_query=True) is not None
            mode = "hybrid" if visual_ok or (has_dense and self.text_encoder() is not None) else "text"
        vector = text_vector = None
        if mode == "dense" or (mode == "hybrid" and has_dense):
            text_encoder = self.text_encoder() if has_dense else None
            if text_encoder is not None:
                text_vector = text_encoder.encode_queries([query])[0]
            elif mode == "dense":
                raise EncoderUnavailable("dense text search needs the index's text vectors and its text encoder "
                                         f"({self.recorded_encoder(TEXT_ENCODER_META) or 'none yet'}); "
                                         "run `docrag index --text-encoder PATH`")
        if mode == "visual" or (mode == "hybrid" and (has_visual or text_vector is None)):
            if not has_visual:
                raise EncoderUnavailable("this index has no visual vectors (it was built without an encoder); "
                                         "use --mode text, or re-run `docrag index --encoder PATH`")
            encoder = self.encoder(for_query=True)
            if encoder is not None:
                vector = encoder.encode_queries([query])[0]
            elif mode == "visual" or text_vector is None:
                raise EncoderUnavailable("visual search needs the encoder the index was built with "
                                         f"({self.recorded_encoder() or 'unknown'}); pass --encoder")
        c = self.config
        weights = {"text": c.weight_text, "dense": c.weight_dense, "visual": c.weight_visual}
        with self._store("docrag search") as store:
            return store.query(text=query, vector=vector, text_vector=text_vector, mode=mode, top_k=top_k,
                               doc_filter=doc, rrf_k=c.rrf_k, weights=weights)

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
        pages = visual = text_dense = store_bytes = 0
        if docs or c.qdrant_url:
            with self._store("docrag status") as store:
                pages, visual, store_bytes = store.count(), store.count_with_visual(), store.bytes_on_disk()
                text_dense = store.count_with_text_dense()
        from indexing.pages import PageStore

        return {
            "index_dir": str(c.index_dir),
            "backend": "qdrant-server" if c.qdrant_url else "qdrant-edge",
            "documents": sum(d.status == COMPLETE for d in docs),
            "pending": sum(d.status != COMPLETE for d in docs),
            "pages": pages,
            "pages_with_visual": visual,
            "pages_with_text_dense": text_dense,
            "store_bytes": store_bytes,
            "page_image_bytes": PageStore(c.index_dir, fmt=c.page_format).bytes_used(),
            "encoder": encoder,
            "text_encoder": self.recorded_encoder(TEXT_ENCODER_META),
        }


def hit_to_dict(hit: Hit, index_dir: Path, text_chars: int = 300) -> dict[str, Any]:
    d = asdict(hit)
    return {"doc": d["doc_path"], "page": d["page"], "score": round(float(d["score"]), 6),
            "image": str(index_dir / d["image_path"]), "text": (d.get("text") or "")[:text_chars],
            "title": d.get("title", ""), "text_source": d.get("text_source", "layer")}

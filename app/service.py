"""DocRag: the one place where an encoder, the indexer and the store meet (CLI, UI, LangChain use it)."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexing.manifest import COMPLETE, MANIFEST_NAME, Manifest, NoIndex
from indexing.pipeline import Events, Indexer, IndexOptions, IndexReport
from indexing.resolve import filter_hashes, with_current_paths
from indexing.store import Hit, locked_store

from .config import Config, load_config
from .encoders import (
    EncoderUnavailable,
    calibrated_weight,
    check_encoder_folder,
    cuda_available,
    is_untrained,
    looks_like_folder,
)
from .lazy_encoder import LazyEncoder

if TYPE_CHECKING:
    from .answer import AnswerStream
    from .llm import LLM

MODES = ("visual", "text", "dense", "hybrid")
ENCODER_META = "encoder"  # manifest key: the encoder the index's visual vectors came from
TEXT_ENCODER_META = "text_encoder"  # manifest key: the text encoder of the index's `text_dense` vectors
NO_TEXT_ENCODER = "none"  # its value for an index built without one (so `auto` never adds one later)


@dataclass(frozen=True)
class SearchPlan:
    """What one search ranks by: its mode and, for hybrid, whether the dense text and visual sources take part
    (BM25 always does)."""

    mode: str
    visual: bool
    dense: bool

    @classmethod
    def explicit(cls, mode: str, has_visual: bool, has_dense: bool) -> SearchPlan:
        """``--mode MODE``: that source alone; hybrid: every source the index has, untrained or not (on a text-only
        index, the visual side's error says what is missing)."""
        if mode == "hybrid":
            return cls(mode, has_visual or not has_dense, has_dense)
        return cls(mode, mode == "visual", mode == "dense")


class DocRag:
    """Index, search and ask over one index folder, as configured.

    >>> rag = DocRag(index_dir="./.docrag")          # or DocRag(load_config({...}))
    >>> rag.index(["./pdfs"]); hits = rag.search("revenue by region", top_k=3, mode="text")
    >>> for chunk in (answer := rag.ask("Which region grew fastest?")): print(chunk, end="")
    >>> answer.result().citations

    ``keep_open=True`` (long-running processes: the UI, a retriever in a server) keeps the store open
    between queries and lets go whenever another process waits for the index (`indexing.store.shared`);
    call ``close()`` (or use ``with DocRag(...) as rag:``) at the end.
    """

    def __init__(self, config: Config | None = None, encoder: Any | str | None = None, *,
                 index_dir: str | Path | None = None, keep_open: bool = False, llm: LLM | str | None = None,
                 **overrides: Any) -> None:
        if isinstance(encoder, str | Path):  # DocRag(index_dir=..., encoder="none" | "auto" | folder | hub id)
            overrides["encoder"], encoder = str(encoder), None
        if isinstance(llm, str):  # DocRag(..., llm="none" | "auto" | "openai" | "transformers")
            overrides["llm"], llm = llm, None
        if config is None:
            config = load_config({"index_dir": index_dir, **overrides})
        elif index_dir is not None or overrides:
            given = {"index_dir": Path(index_dir).expanduser().absolute() if index_dir else None, **overrides}
            config = dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None})
        self.config = config
        self._encoder = encoder
        self._encoder_resolved = encoder is not None
        self._llm = llm
        self._llm_resolved = llm is not None
        self._text_encoder: Any | None = None
        self._text_encoder_resolved = False
        self._reranker: Any | None = None
        self._reranker_resolved = False
        self._matcher: tuple[tuple[str, str], Any] | None = None
        self._shared = None
        if keep_open:
            self.keep_store_open()
        self.notes: list[str] = []  # one-line notices for the user (e.g. "text layer only")

    # ---- long-running processes --------------------------------------------------------------
    def keep_store_open(self, poll_s: float | None = None, idle_close_s: float | None = None) -> None:
        """Keep the store open between queries (released whenever a writer waits). Idempotent."""
        if self._shared is None:
            from indexing.store import StoreSettings
            from indexing.store.shared import DEFAULT_IDLE_CLOSE_S, DEFAULT_POLL_S, SharedStore

            c = self.config
            settings = StoreSettings(c.qdrant_url, c.qdrant_api_key, c.qdrant_collection, "docrag (kept open)",
                                     c.lock_timeout_s)
            self._shared = SharedStore(c.index_dir, settings, None, poll_s=poll_s or DEFAULT_POLL_S,
                                       idle_close_s=idle_close_s or DEFAULT_IDLE_CLOSE_S)

    def close(self) -> None:
        """Release the store if it is kept open (a later query reopens it)."""
        if self._shared is not None:
            self._shared.close()

    def __enter__(self) -> DocRag:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- encoder -----------------------------------------------------------------------------
    def _manifest(self) -> Manifest | None:
        """The index's manifest, or None before anything was indexed (reading must not create one)."""
        return Manifest(self.config.index_dir) if (self.config.index_dir / MANIFEST_NAME).exists() else None

    def recorded_encoder(self, key: str = ENCODER_META) -> str | None:
        """The encoder the index's visual vectors came from (None for a text-only index); `key` for another
        (``TEXT_ENCODER_META``: the text encoder of its dense text vectors; None when it has none)."""
        manifest = self._manifest()
        if manifest is None:
            return None
        with manifest:
            value = manifest.get_meta(key)
        return None if value == NO_TEXT_ENCODER else value

    def is_new_index(self) -> bool:
        """Nothing indexed yet and no text-encoder choice recorded: `text_encoder = "auto"` means the default."""
        manifest = self._manifest()
        if manifest is None:
            return True
        with manifest:
            return manifest.get_meta(TEXT_ENCODER_META) is None and not any(True for _ in manifest.documents())

    def text_encoder(self):
        """The dense text encoder, or None. ``text_encoder``: none | a folder or hub id | the built-in model's name
        (or ``builtin``) | auto: the index's own, and for a new index the built-in model (`app.textenc`)."""
        if self._text_encoder_resolved:
            return self._text_encoder
        self._text_encoder_resolved = True
        from .textenc import DEFAULT_TEXT_ENCODER, TextEncoderUnavailable, load_text_encoder

        choice = self.config.text_encoder
        implicit = False
        if choice == "auto":
            recorded = self.recorded_encoder(TEXT_ENCODER_META)
            implicit = recorded is None and self.is_new_index()
            choice = recorded or (DEFAULT_TEXT_ENCODER if implicit else NO_TEXT_ENCODER)
        if choice == NO_TEXT_ENCODER:
            return None
        try:
            self._text_encoder = load_text_encoder(choice, device=self.config.device)
        except TextEncoderUnavailable as e:
            if not implicit:
                raise EncoderUnavailable(str(e)) from e
            self.notes.append(f"{e}; indexing without dense text vectors")
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
                if not cuda_available():
                    if not for_query:
                        self.notes.append("no GPU and no --encoder: indexing the text layer only "
                                          "(pass --encoder PATH to embed page images)")
                    return None
                choice = self.config.auto_encoder
        check_encoder_folder(choice)  # a wrong path is said now; the model itself loads on first use
        self._encoder = LazyEncoder(choice, lambda: self._load_encoder(choice))
        return self._encoder

    def _load_encoder(self, name: str):
        check_encoder_folder(name)
        from moca_train.modeling import MoCaEncoder

        try:
            return MoCaEncoder.from_pretrained(
                name, processor=self.config.processor, device=self.config.device, dtype=self.config.dtype,
                token_budget=self.config.token_budget,
            )
        except Exception as e:  # CheckpointError, OSError, safetensors' errors, ...: the checkpoint is unusable
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if not looks_like_folder(name):
                reason = f"no folder {name} here, and not loadable as a hub id: {reason}"
            raise EncoderUnavailable(f"cannot load encoder {name}: {reason}") from e

    # ---- index -------------------------------------------------------------------------------
    def index_options(self, command: str = "docrag index") -> IndexOptions:
        c = self.config
        return IndexOptions(renderer=c.renderer, dpi=c.dpi, max_pixels=c.max_page_pixels, page_format=c.page_format,
                            webp_method=c.webp_method, page_store=c.page_store, workers=c.index_workers,
                            batch_pages=c.batch_pages,
                            lock_timeout_s=c.lock_timeout_s, qdrant_url=c.qdrant_url,
                            api_key=c.qdrant_api_key, collection=c.qdrant_collection, command=command,
                            bm25_language=c.bm25_language, ocr=c.ocr, ocr_lang=c.ocr_lang, ocr_engine=c.ocr_engine,
                            ocr_workers=c.ocr_workers)

    def index(self, paths: list[str | Path], prune: bool = False, events: Events | None = None) -> IndexReport:
        encoder = self.encoder()
        if encoder is not None:
            recorded = self.recorded_encoder()
            if recorded and recorded != encoder.name:
                self.notes.append(f"index was built with encoder {recorded}; now using {encoder.name}")
            if is_untrained(encoder.name):
                self.notes.append(f"encoder {encoder.name} is untrained (written by `docrag train init`): its "
                                  "vectors are noise, and search leaves them out unless --mode visual or hybrid")
        text_encoder = self.text_encoder()
        if text_encoder is not None:
            recorded = self.recorded_encoder(TEXT_ENCODER_META)
            if recorded and recorded != text_encoder.name:
                raise EncoderUnavailable(f"index's text vectors come from {recorded}, not {text_encoder.name}: "
                                         "use that --text-encoder, or a new index folder")
        self._record_text_encoder(text_encoder, first=True)  # before any page: an interrupted first run keeps it
        report = Indexer(self.config.index_dir, encoder, self.index_options(), events,
                         text_embedder=text_encoder).sync(paths, prune=prune)
        with Manifest(self.config.index_dir) as manifest:
            if encoder is not None:
                manifest.set_meta(ENCODER_META, encoder.name)
        self._record_text_encoder(text_encoder)
        return report

    def _record_text_encoder(self, text_encoder: Any | None, first: bool = False) -> None:
        """The text encoder the index's dense text vectors come from; "none" once, for an index built without one
        (so a later `auto` run never mixes a model into it), never over a model's name."""
        if first and text_encoder is not None and not self.is_new_index():
            return  # an existing index gets the name once its vectors are in (the backfill runs in sync)
        with Manifest(self.config.index_dir) as manifest:
            if text_encoder is not None:
                manifest.set_meta(TEXT_ENCODER_META, text_encoder.name)
            elif manifest.get_meta(TEXT_ENCODER_META) is None:
                manifest.set_meta(TEXT_ENCODER_META, NO_TEXT_ENCODER)

    def delete(self, path: str | Path) -> int:
        """Remove one document; raises `NoIndex` (creating nothing) on a folder without an index."""
        return Indexer(self.config.index_dir, None, self.index_options("docrag delete")).delete(path)

    # ---- search ------------------------------------------------------------------------------
    def _store(self, command: str):
        if self._shared is not None:
            return self._shared.use()
        c = self.config
        return locked_store(c.index_dir, None, c.qdrant_url, c.qdrant_api_key, c.qdrant_collection,
                            command=command, timeout_s=c.lock_timeout_s)

    def resolve_mode(self, mode: str | None = None) -> str:
        """The mode a search runs in: ``auto`` (or None, with ``mode = "auto"`` configured) is hybrid when the
        index has a dense text vector or a trained visual one whose encoder can be loaded, else text."""
        return self._plan(mode).mode

    def _plan(self, mode: str | None) -> SearchPlan:
        """Which sources a search ranks by. ``auto`` fuses BM25 with every other source the index has, can load and
        weights above 0, except the vectors of an untrained encoder (`docrag train init`: noise), which only an
        explicit ``--mode visual`` or ``hybrid`` uses; it says so in `notes`."""
        mode = mode or self.config.mode
        if mode not in (*MODES, "auto"):
            raise ValueError(f"unknown mode {mode!r}; choose visual, text, dense, hybrid or auto")
        has_visual, has_dense = self._index_vectors()
        if mode != "auto":
            return SearchPlan.explicit(mode, has_visual, has_dense)
        weights = self.fusion_weights()
        dense = has_dense and weights["dense"] > 0 and self.text_encoder() is not None
        visual = has_visual and weights["visual"] > 0
        if visual and is_untrained(self.recorded_encoder()):
            self.notes.append(f"encoder {self.recorded_encoder()} is untrained (written by `docrag train init`): "
                              "search leaves its visual vectors out; --mode visual or hybrid uses them")
            visual = False
        visual = visual and self.encoder(for_query=True) is not None
        return SearchPlan("hybrid" if dense or visual else "text", visual, dense)

    def fusion_weights(self) -> dict[str, float]:
        """Hybrid's RRF weight per source: the config's; the visual one, when not set, is the weight a training run
        calibrated for the index's encoder (`docrag train pipeline`), else 1."""
        c = self.config
        visual = c.weight_visual
        if visual is None:
            visual = calibrated_weight(self.recorded_encoder())
        return {"text": c.weight_text, "dense": c.weight_dense, "visual": 1.0 if visual is None else visual}

    def available_modes(self) -> list[str]:
        """The search modes this index supports: text always, dense and visual when it has those vectors, and
        hybrid when there is anything to fuse BM25 with."""
        visual, dense = self._index_vectors()
        return [m for m, ok in (("text", True), ("dense", dense), ("visual", visual), ("hybrid", visual or dense))
                if ok]

    def _index_vectors(self) -> tuple[bool, bool]:
        """Whether the index has (visual, dense text) vectors, from one manifest read."""
        manifest = self._manifest()
        if manifest is None:
            return False, False
        with manifest:
            return manifest.has_visual(), manifest.get_meta(TEXT_ENCODER_META) not in (None, NO_TEXT_ENCODER)

    def search(self, query: str, top_k: int | None = None, mode: str | None = None,
               doc: str | None = None, rerank: bool = True) -> list[Hit]:
        """Top pages for ``query``: text (BM25), dense (text encoder), visual (encoder), or hybrid: every source
        the index has, fused by weighted RRF in one Qdrant query; then the configured reranker (``rerank``, off by
        default; ``rerank=False`` skips it). Each hit carries a snippet around the query's matched terms."""
        if not query.strip():
            raise ValueError("empty query")
        top_k = self.config.top_k if top_k is None else top_k
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self._require_index()
        plan = self._plan(mode)
        text_vector = self._query_text_vector(query, plan) if plan.dense else None
        vector = self._query_visual_vector(query, plan, text_vector) if plan.visual else None
        # Paths come from the manifest, never from the payloads (copies and renames: `indexing.resolve`).
        with Manifest.existing(self.config.index_dir) as manifest:
            hashes = filter_hashes(manifest, doc)
        if hashes is not None and not hashes:
            return []
        reranker = self.reranker() if rerank else None
        fetch = max(top_k, self.config.rerank_top_n) if reranker is not None else top_k
        with self._store("docrag search") as store:
            hits = store.query(text=query, vector=vector, text_vector=text_vector, mode=plan.mode, top_k=fetch,
                               doc_hashes=hashes, rrf_k=self.config.rrf_k, weights=self.fusion_weights())
            bm25 = store.bm25
        with Manifest.existing(self.config.index_dir) as manifest:
            hits = with_current_paths(hits, manifest)
        if reranker is not None:  # outside the store's lock: a reranker may take seconds
            n = self.config.rerank_top_n
            hits = reranker.rerank(query, hits[:n], self.config.index_dir) + hits[n:]
        hits = hits[:top_k]
        self._add_snippets(hits, query, bm25)
        return hits

    def _query_text_vector(self, query: str, plan: SearchPlan):
        text_encoder = self.text_encoder()
        if text_encoder is not None:
            return text_encoder.encode_queries([query])[0]
        if plan.mode == "dense":
            raise EncoderUnavailable("dense text search needs the index's text vectors and its text encoder "
                                     f"({self.recorded_encoder(TEXT_ENCODER_META) or 'none yet'}); "
                                     "run `docrag index --text-encoder NAME`")
        return None

    def _query_visual_vector(self, query: str, plan: SearchPlan, text_vector: Any):
        if not self._index_vectors()[0]:
            raise EncoderUnavailable("this index has no visual vectors (it was built without an encoder); "
                                     "use --mode text, or re-run `docrag index --encoder PATH`")
        encoder = self.encoder(for_query=True)
        if encoder is not None:
            return encoder.encode_queries([query])[0]
        if plan.mode == "visual" or text_vector is None:
            raise EncoderUnavailable("visual search needs the encoder the index was built with "
                                     f"({self.recorded_encoder() or 'unknown'}); pass --encoder")
        return None

    def _add_snippets(self, hits: list[Hit], query: str, bm25) -> None:
        from indexing.snippets import TermMatcher

        from .highlights import annotate_hits

        key = (bm25.language, bm25.cjk)
        if self._matcher is None or self._matcher[0] != key:
            self._matcher = (key, TermMatcher(bm25))
        annotate_hits(hits, query, self._matcher[1], self.config.index_dir)

    def reranker(self):
        """The configured reranker (``rerank``: none | cross-encoder:NAME | llm), built once; None when off."""
        if not self._reranker_resolved:
            from .rerank import make_reranker

            self._reranker = make_reranker(self.config, self.llm)
            self._reranker_resolved = True
        return self._reranker

    def _require_index(self) -> None:
        """Reading a folder without an index is an error (a typo in --index-dir), and must create nothing."""
        if not (self.config.index_dir / MANIFEST_NAME).is_file():
            raise NoIndex(self.config.index_dir)

    # ---- ask ---------------------------------------------------------------------------------
    def llm(self) -> LLM | None:
        """The configured answer model, built once; None when no LLM is configured."""
        if not self._llm_resolved:
            from .llm import make_llm

            self._llm = make_llm(self.config)
            self._llm_resolved = True
        return self._llm

    def ask(self, question: str, top_k: int | None = None, mode: str | None = None,
            doc: str | None = None) -> AnswerStream:
        """Retrieve the top pages and stream an answer that cites them as [1], [2], ...

        Iterate the result for the answer's text as it arrives; ``.result()`` (after or instead of
        iterating) gives the `Answer` with its citations mapped to (document, page). Raises
        `LLMNotConfigured` when no LLM is configured and `LLMError` when the endpoint fails.
        """
        from .answer import AnswerStream
        from .llm import LLMNotConfigured

        llm = self.llm()
        if llm is None:
            raise LLMNotConfigured()
        hits = self.search(question, top_k=top_k or self.config.ask_top_k, mode=mode, doc=doc)
        return AnswerStream(llm, question, hits, self.config.index_dir, text_chars=self.config.llm_text_chars,
                            image_max_side=self.config.llm_image_max_side)

    # ---- status ------------------------------------------------------------------------------
    def status(self, missing_ok: bool = False) -> dict[str, Any]:
        """What the index holds; raises `NoIndex` (creating nothing) on a folder without an index, unless
        `missing_ok` (the web UI, which owns its folder, shows an empty index before the first upload)."""
        c = self.config
        docs, encoder = [], None
        try:
            with Manifest.existing(c.index_dir) as manifest:
                docs = list(manifest.documents())
                encoder = manifest.get_meta(ENCODER_META)
        except NoIndex:
            if not missing_ok:
                raise
        pages = visual = text_dense = store_bytes = 0
        if docs or c.qdrant_url:
            with self._store("docrag status") as store:
                pages, visual, store_bytes = store.count(), store.count_with_visual(), store.bytes_on_disk()
                text_dense = store.count_with_text_dense()
        from indexing.pages import PageStore
        from indexing.thumbnails import ThumbnailStore

        with ThumbnailStore(c.index_dir, create=False) as thumbs:  # page_store = "thumbnail" (the default)
            image_bytes = PageStore(c.index_dir, fmt=c.page_format).bytes_used() + thumbs.bytes_used()
        return {
            "index_dir": str(c.index_dir),
            "backend": "qdrant-server" if c.qdrant_url else "qdrant-edge",
            "documents": sum(d.status == COMPLETE for d in docs),
            "pending": sum(d.status != COMPLETE for d in docs),
            "pages": pages,
            "pages_with_visual": visual,
            "pages_with_text_dense": text_dense,
            "store_bytes": store_bytes,
            "page_image_bytes": image_bytes,
            "page_image_bytes_per_page": round(image_bytes / pages) if pages else 0,
            "encoder": encoder,
            "encoder_untrained": is_untrained(encoder),
            "text_encoder": self.recorded_encoder(TEXT_ENCODER_META),
            "fusion": {"rrf_k": c.rrf_k, **self.fusion_weights()},
            "rerank": c.rerank,
        }


def hit_to_dict(hit: Hit, index_dir: Path, text_chars: int = 300, thumbnail: bool = False) -> dict[str, Any]:
    """A hit as JSON: ``image`` is a file that exists now (rendered into the index's page cache when the index
    keeps no full images) or None with ``image_error`` saying why; ``thumbnail=True`` gives the thumbnail."""
    from .page_image import hit_image

    d = asdict(hit)
    image, image_error = hit_image(index_dir, hit, thumbnail=thumbnail)
    return {"doc": d["doc_path"], "docs": d.get("doc_paths") or [d["doc_path"]], "page": d["page"],
            "doc_hash": d["doc_hash"], "score": round(float(d["score"]), 6), "image": image,
            **({"image_error": image_error} if image_error else {}),
            "text": (d.get("text") or "")[:text_chars], "title": d.get("title", ""),
            "text_source": d.get("text_source", "layer"), "snippet": d.get("snippet", ""),
            "matched_terms": d.get("matched_terms") or [], "highlights": d.get("highlights") or [],
            **({"highlights_note": d["highlights_note"]} if d.get("highlights_note") else {})}

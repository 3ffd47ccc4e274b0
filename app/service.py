"""DocRag: the one place where an encoder, the indexer and the store meet (CLI, UI, LangChain use it)."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexing.manifest import COMPLETE, MANIFEST_NAME, Manifest, NoIndex
from indexing.pipeline import Events, Indexer, IndexOptions, IndexReport
from indexing.resolve import filter_hashes, with_current_paths
from indexing.run import EmbedderUnavailable
from indexing.store import Hit, locked_store

from .config import Config, load_config
from .lazy_encoder import LazyEncoder

if TYPE_CHECKING:
    from .answer import AnswerStream
    from .llm import LLM

MODES = ("visual", "text", "dense", "hybrid")
ENCODER_META = "encoder"  # manifest key: the encoder the index's visual vectors came from
TEXT_ENCODER_META = "text_encoder"  # manifest key: the text encoder of the index's `text_dense` vectors


class EncoderUnavailable(EmbedderUnavailable):
    """The encoder cannot be used as configured (a missing folder, a checkpoint that does not load)."""


# Files that exist only where an NVIDIA driver is loaded (Linux; /dev/dxg: WSL's GPU bridge).
_NVIDIA_MARKERS = ("/proc/driver/nvidia/gpus", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def cuda_available() -> bool:
    """Whether a CUDA GPU can be used, without importing torch (~1 s, ~190 MB) where the answer is plainly no.

    No NVIDIA driver on the machine, or ``CUDA_VISIBLE_DEVICES`` set to none, means no; only otherwise is torch
    asked (it is about to be needed anyway: the encoder is a torch model).
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return False
    if "torch" not in sys.modules and not any(os.path.exists(m) for m in _NVIDIA_MARKERS):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _looks_like_folder(name: str) -> bool:
    """A path the user meant as a folder, not a hub id ("org/name")."""
    return (name.startswith((".", "/", "~")) or "\\" in name or name.count("/") != 1
            or Path(name).expanduser().exists())


def _check_encoder_folder(name: str) -> None:
    """Say what is wrong with a folder the user named, not what a hub would make of its name."""
    folder = Path(name).expanduser()
    if not _looks_like_folder(name):
        return
    if not folder.exists():
        raise EncoderUnavailable(f"encoder folder {name} does not exist")
    if not folder.is_dir():
        raise EncoderUnavailable(f"encoder {name} is not a folder (expected a checkpoint folder with config.json)")
    if not (folder / "config.json").is_file():
        raise EncoderUnavailable(f"encoder folder {name} has no config.json: not a saved checkpoint "
                                 "(`docrag train init` or a training run writes one)")


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
                if not cuda_available():
                    if not for_query:
                        self.notes.append("no GPU and no --encoder: indexing the text layer only "
                                          "(pass --encoder PATH to embed page images)")
                    return None
                choice = self.config.auto_encoder
        _check_encoder_folder(choice)  # a wrong path is said now; the model itself loads on first use
        self._encoder = LazyEncoder(choice, lambda: self._load_encoder(choice))
        return self._encoder

    def _load_encoder(self, name: str):
        _check_encoder_folder(name)
        from moca_train.modeling import MoCaEncoder

        try:
            return MoCaEncoder.from_pretrained(
                name, processor=self.config.processor, device=self.config.device, dtype=self.config.dtype,
                token_budget=self.config.token_budget,
            )
        except Exception as e:  # CheckpointError, OSError, safetensors' errors, ...: the checkpoint is unusable
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if not _looks_like_folder(name):
                reason = f"no folder {name} here, and not loadable as a hub id: {reason}"
            raise EncoderUnavailable(f"cannot load encoder {name}: {reason}") from e

    # ---- index -------------------------------------------------------------------------------
    def index_options(self, command: str = "docrag index") -> IndexOptions:
        c = self.config
        return IndexOptions(renderer=c.renderer, dpi=c.dpi, max_pixels=c.max_page_pixels, page_format=c.page_format,
                            webp_method=c.webp_method, write_threads=c.page_write_threads, batch_pages=c.batch_pages,
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
        index has visual or dense text vectors and their encoder can be loaded, else text."""
        return self._resolve_mode(mode, *self._index_vectors())

    def _resolve_mode(self, mode: str | None, has_visual: bool, has_dense: bool) -> str:
        mode = mode or self.config.mode
        if mode != "auto":
            return mode
        visual_ok = has_visual and self.encoder(for_query=True) is not None
        dense_ok = has_dense and self.text_encoder() is not None
        return "hybrid" if visual_ok or dense_ok else "text"

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
            return manifest.has_visual(), manifest.get_meta(TEXT_ENCODER_META) is not None

    def search(self, query: str, top_k: int | None = None, mode: str | None = None,
               doc: str | None = None) -> list[Hit]:
        """Top pages for ``query``: text (BM25), dense (text encoder), visual (encoder), or hybrid: every source
        the index has, fused by weighted RRF in one Qdrant query."""
        if not query.strip():
            raise ValueError("empty query")
        mode = mode or self.config.mode
        if mode not in (*MODES, "auto"):
            raise ValueError(f"unknown mode {mode!r}; choose visual, text, dense, hybrid or auto")
        top_k = self.config.top_k if top_k is None else top_k
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self._require_index()
        has_visual, has_dense = self._index_vectors()
        mode = self._resolve_mode(mode, has_visual, has_dense)
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
        # Paths come from the manifest, never from the payloads (copies and renames: `indexing.resolve`).
        with Manifest.existing(self.config.index_dir) as manifest:
            hashes = filter_hashes(manifest, doc)
        if hashes is not None and not hashes:
            return []
        c = self.config
        weights = {"text": c.weight_text, "dense": c.weight_dense, "visual": c.weight_visual}
        with self._store("docrag search") as store:
            hits = store.query(text=query, vector=vector, text_vector=text_vector, mode=mode, top_k=top_k,
                               doc_hashes=hashes, rrf_k=c.rrf_k, weights=weights)
        with Manifest.existing(self.config.index_dir) as manifest:
            return with_current_paths(hits, manifest)

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

        image_bytes = PageStore(c.index_dir, fmt=c.page_format).bytes_used()
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
            "text_encoder": self.recorded_encoder(TEXT_ENCODER_META),
        }


def hit_to_dict(hit: Hit, index_dir: Path, text_chars: int = 300) -> dict[str, Any]:
    d = asdict(hit)
    return {"doc": d["doc_path"], "docs": d.get("doc_paths") or [d["doc_path"]], "page": d["page"],
            "score": round(float(d["score"]), 6), "image": str(index_dir / d["image_path"]),
            "text": (d.get("text") or "")[:text_chars], "title": d.get("title", ""),
            "text_source": d.get("text_source", "layer")}

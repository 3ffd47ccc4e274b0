"""`docrag eval`: index an evaluation set's corpus with the normal indexing code, run every query in each
mode through `DocRag.search`, and score the rankings with trec_eval (`metrics.py`).

The index lives under the index folder, in ``evals/<name>-<encoder>[-dense-<text encoder>][-<ocr>]`` (one per
encoder, text encoder and non-default OCR setting, since each changes what an index holds); a second run over
an unchanged corpus re-uses it (indexing is incremental), and a corpus file dropped from the set is deleted
from it. ``temporary=True`` indexes into a scratch folder there and removes it afterwards. Hits map back to
corpus ids by (content hash, page): two corpus rows with the same bytes share the index's one copy. Pages of a
PDF that are not in the corpus are indexed with it and dropped from the results; the search then asks for that
many more hits, so the top ``top_k`` corpus pages are exact (hybrid fuses before dropping).

Modes: text (BM25) always; dense with a text encoder (``config.text_encoder``; "auto" is the built-in model, what a
new index gets);
visual with an encoder; hybrid when either exists, fused with the config's ``rrf_k`` and ``weight_*``, so
fusion settings can be scored on one index without re-indexing.

Determinism: text, dense and visual rankings are identical run to run and index to index (equal scores are ordered
by corpus id). Hybrid is fused inside Qdrant, which orders equal scores within its prefetch lists as it
likes: on a re-used index its metrics repeat, but a rebuilt index can move them in the third decimal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexing.manifest import MANIFEST_NAME, Manifest
from indexing.pipeline import Events
from indexing.scan import sha256_file

from ..config import Config
from ..service import DocRag
from .dataset import EvalDataset
from .metrics import evaluate, per_query, rank

EVALS_DIR = "evals"
# What each mode needs that a text-only index lacks, and the option that adds it.
_NEEDS = {"dense": ("dense text", "--text-encoder"), "visual": ("visual", "--encoder"),
          "hybrid": ("visual or dense text", "--encoder or --text-encoder")}
# Extra hits asked for beyond top_k, so that pages tied at the cut-off all come back and the corpus-id
# tie-break (not the engine's order) decides which of them make the top_k.
TIE_MARGIN = 10


class EvalEvents:
    """Progress hooks of an evaluation run; the CLI shows bars, the library default shows nothing."""

    def indexing(self, encoder: str) -> Events:
        return Events()

    def queries(self, mode: str, total: int) -> None: ...

    def query_done(self) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass
class ModeResult:
    metrics: dict[str, Any]                      # metrics.evaluate(): means, n_queries, subsets
    per_query: dict[str, dict[str, float]]       # for significance tests
    latency_ms: dict[str, float]                 # p50, p95 of DocRag.search calls
    ranking: dict[str, list[str]] = field(repr=False, default_factory=dict)


@dataclass
class EvalResult:
    dataset: str
    encoder: str                                 # "none" for a text-only index
    index_dir: str
    indexing: dict[str, Any]                     # pages, seconds, pages_per_s, reused
    modes: dict[str, ModeResult]

    def metrics_json(self) -> dict[str, Any]:
        """What ``docrag eval --json`` prints: ``{mode: {"ndcg@5": …, …, "n_queries": …, "subsets": …}}``."""
        return {mode: r.metrics for mode, r in self.modes.items()}

    def report(self) -> dict[str, Any]:
        """Everything (``--out FILE``): the metrics plus indexing speed, latency, encoder, index."""
        return {"dataset": self.dataset, "encoder": self.encoder, "index_dir": self.index_dir,
                "indexing": self.indexing, "latency_ms": {m: r.latency_ms for m, r in self.modes.items()},
                "metrics": self.metrics_json()}


def resolve_encoder(config: Config) -> str:
    """The encoder an evaluation uses: ``auto`` is the configured model where a GPU can run it, else none."""
    choice = config.encoder
    if choice == "auto":
        import torch

        return config.auto_encoder if torch.cuda.is_available() else "none"
    return choice


def resolve_text_encoder(config: Config, events: EvalEvents | None = None) -> str:
    """The text encoder an evaluation uses: ``auto`` is what a new index gets (the built-in model, when it is
    installed), so a plain `docrag eval` scores the default search."""
    from ..textenc import BUILTIN_NAME, DEFAULT_TEXT_ENCODER, builtin_missing, is_builtin

    choice = config.text_encoder
    if is_builtin(choice):
        return BUILTIN_NAME
    if choice != "auto":
        return choice
    missing = builtin_missing() if DEFAULT_TEXT_ENCODER == BUILTIN_NAME else None
    if missing:
        if events is not None:
            events.note(f"{missing}; evaluating without dense text vectors")
        return "none"
    return DEFAULT_TEXT_ENCODER


def index_name(dataset: EvalDataset, encoder: str, name: str | None = None, text_encoder: str = "none",
               ocr: str = "") -> str:
    """``<name>-<encoder>[-dense-<text encoder>][-<ocr>]``, ``name`` defaulting to ``<dataset folder>-<hash of
    its path>``: stable across runs, distinct per set, encoders and OCR settings (each changes what is stored)."""
    base = name or f"{dataset.root.name}-{hashlib.sha1(str(dataset.root).encode()).hexdigest()[:8]}"
    parts = [base, "text" if encoder == "none" else _model_tag(encoder)]
    if text_encoder != "none":
        parts.append(f"dense-{_model_tag(text_encoder)}")
    if ocr:
        parts.append(ocr)
    return _safe("-".join(parts))


def ocr_tag(config: Config) -> str:
    """The OCR settings in an eval index's name; empty for the defaults (so existing indexes keep their names)."""
    if config.ocr == "never":
        return "ocr-never"
    if (config.ocr, config.ocr_engine, config.ocr_lang) == ("auto", "tesseract", "eng"):
        return ""
    return f"ocr-{config.ocr}-{config.ocr_engine}-{config.ocr_lang}"


def _model_tag(model: str) -> str:
    key = str(Path(model).resolve()) if Path(model).exists() else model
    return f"{Path(model).name}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


class EvalRunner:
    def __init__(self, dataset: EvalDataset, config: Config, events: EvalEvents | None = None,
                 name: str | None = None, temporary: bool = False) -> None:
        self.dataset, self.config = dataset, config
        self.events = events or EvalEvents()
        self.name, self.temporary = name, temporary

    def run(self, modes: Sequence[str] | None = None, top_k: int = 100, encoder: str | None = None) -> EvalResult:
        """Index (or re-use) and score ``modes`` (default: every mode the index supports)."""
        encoder = encoder or resolve_encoder(self.config)
        text_encoder = resolve_text_encoder(self.config, self.events)
        root = self.config.index_dir / EVALS_DIR
        if self.temporary:
            root.mkdir(parents=True, exist_ok=True)
            index_dir = Path(tempfile.mkdtemp(prefix="tmp-", dir=root))
        else:
            index_dir = root / index_name(self.dataset, encoder, self.name, text_encoder, ocr_tag(self.config))
        try:
            svc = DocRag(dataclasses.replace(self.config, index_dir=index_dir, encoder=encoder,
                                             text_encoder=text_encoder, qdrant_url=None))
            indexing, pages_by_key, extra = self._index(svc, encoder)
            available = svc.available_modes()
            modes = list(modes or available)
            for mode in modes:
                if mode not in available:
                    what, flag = _NEEDS[mode]
                    raise ValueError(f"mode {mode} needs {what} vectors: pass {flag} (this index has "
                                     f"{', '.join(available)} only)")
            results = {mode: self._score(svc, mode, top_k, pages_by_key, extra, rerank=False) for mode in modes}
            if svc.reranker() is not None:  # a reranker configured: each mode with it too, beside the plain one
                for note in svc.notes:
                    self.events.note(note)
                results.update({f"{mode}+rerank": self._score(svc, mode, top_k, pages_by_key, extra, rerank=True)
                                for mode in modes})
            return EvalResult(str(self.dataset.root), encoder, str(index_dir), indexing, results)
        finally:
            if self.temporary:
                shutil.rmtree(index_dir, ignore_errors=True)

    # ---- indexing ----------------------------------------------------------------------------
    def _index(self, svc: DocRag, encoder: str) -> tuple[dict[str, Any], dict[tuple[str, int], list[str]], int]:
        files = sorted({row.path for row in self.dataset.corpus})
        digests = {path: sha256_file(path) for path in files}
        by_key: dict[tuple[str, int], list[str]] = {}
        for row in self.dataset.corpus:
            by_key.setdefault((digests[row.path], row.page), []).append(row.id)
        index_dir = svc.config.index_dir
        self._drop_stale(svc, {str(p) for p in files})
        encoder_ = svc.encoder()
        if encoder_ is not None and hasattr(encoder_, "load"):
            encoder_.load()  # load it (or fail) before the progress bars start
        for note in svc.notes:
            self.events.note(note)
        started = time.monotonic()
        report = svc.index(files, events=self.events.indexing(encoder))
        seconds = time.monotonic() - started
        if report.failed:
            path, reason = report.problems[0]
            raise ValueError(f"{path}: {reason} (an evaluation needs every corpus page indexed)")
        with Manifest(index_dir) as manifest:
            records = list(manifest.documents())
        indexed_pages = sum(r.pages for r in records)
        hashes = {r.sha256 for r in records}
        missing = sorted(cid for (digest, page), ids in by_key.items() for cid in ids if digest not in hashes)
        if missing:
            raise ValueError(f"corpus row {missing[0]!r} was not indexed")
        indexing = {"pages": report.pages_rendered, "seconds": round(seconds, 3),
                    "pages_per_s": round(report.pages_rendered / seconds, 2) if report.pages_rendered else None,
                    "reused": report.pages_rendered == 0, "indexed_pages": indexed_pages,
                    "ocr_pages": report.ocr_pages, "pages_without_text": report.pages_without_text}
        extra = max(0, indexed_pages - len(by_key))  # pages in the index that are no corpus row
        return indexing, by_key, extra

    def _drop_stale(self, svc: DocRag, keep: set[str]) -> None:
        if not (svc.config.index_dir / MANIFEST_NAME).exists():
            return
        with Manifest(svc.config.index_dir) as manifest:
            stale = [r.path for r in manifest.documents() if r.path not in keep]
        for path in stale:
            svc.delete(path)

    # ---- querying ----------------------------------------------------------------------------
    def _score(self, svc: DocRag, mode: str, top_k: int, by_key: dict[tuple[str, int], list[str]],
               extra: int, rerank: bool = False) -> ModeResult:
        queries = self.dataset.queries
        self.events.queries(mode + ("+rerank" if rerank else ""), len(queries))
        ranking: dict[str, list[str]] = {}
        latencies = []
        for q in queries:
            started = time.perf_counter()
            hits = svc.search(q.text, top_k=top_k + extra + TIE_MARGIN, mode=mode, rerank=rerank)
            latencies.append((time.perf_counter() - started) * 1000)
            scored = [(cid, h.score) for h in hits for cid in by_key.get((h.doc_hash, h.page), ())]
            # Equal scores ordered by corpus id (_stable); trec_eval then gets these ranks, not raw scores.
            ranking[q.id] = rank((cid, -i) for i, (cid, _) in enumerate(_stable(scored)))[:top_k]
            self.events.query_done()
        qrels = self.dataset.qrels
        subsets = self.dataset.subsets()
        lat = {f"p{p}": round(float(np.percentile(latencies, p)), 2) if latencies else 0.0 for p in (50, 95)}
        return ModeResult(evaluate(qrels, ranking, subsets), per_query(qrels, ranking), lat, ranking)


def _stable(scored: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Hits by score descending, equal scores by corpus id: the order must not depend on the engine's."""
    return sorted(scored, key=lambda cs: (-round(cs[1], 9), cs[0]))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:120] or "eval"

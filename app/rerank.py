"""An optional stage after retrieval that reorders the top `rerank_top_n` hits (`rerank` setting, off by default).

* ``cross-encoder:NAME`` — a sentence-transformers `CrossEncoder` (a folder or a hub id) scores each (query, page
  text) pair; hits are ordered by its score, which becomes their score.
* ``llm`` — the configured vision-language LLM sees the candidate pages (image + a slice of their text), numbered,
  and answers with their numbers best first: ONE listwise call. A number it makes up is ignored; pages it leaves
  out follow the ones it ranked, in their retrieval order. A hit's score becomes 1 / its new rank.

A reranker that cannot be built (no such model, no LLM configured) is a one-line `RerankerUnavailable`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexing.store import Hit

from .config import Config
from .encoders import EncoderUnavailable, looks_like_folder
from .page_image import hit_image

CROSS_ENCODER = "cross-encoder:"
CHOICES = "none | cross-encoder:<folder or hub id> | llm"

LLM_PROMPT = (
    "You rank document pages by how well they answer a question. You get numbered pages, each as an image and "
    "part of its text. Reply with the page numbers only, best first, separated by commas (for example: 3, 1, 2). "
    "Use only the numbers shown."
)


class RerankerUnavailable(EncoderUnavailable):
    """The configured reranker cannot be used (a model that does not load, no LLM, an LLM that failed)."""


def make_reranker(config: Config, llm: Callable[[], Any]) -> Any | None:
    """The reranker `config.rerank` names, or None for ``none``; ``llm()`` gives the configured LLM (or None)."""
    choice = (config.rerank or "none").strip()
    if choice == "none":
        return None
    if choice.startswith(CROSS_ENCODER):
        name = choice[len(CROSS_ENCODER):].strip()
        if not name:
            raise ValueError(f"rerank = {choice!r} names no model: use cross-encoder:<folder or hub id>")
        return CrossEncoderReranker(name, device=config.device)
    if choice == "llm":
        model = llm()
        if model is None:
            raise RerankerUnavailable("rerank = llm needs an LLM: set llm_base_url (or DOCRAG_LLM_BASE_URL) or "
                                      "llm = transformers with llm_model")
        return LLMReranker(model, image_max_side=config.llm_image_max_side, text_chars=min(config.llm_text_chars, 600))
    raise ValueError(f"unknown rerank {choice!r}; choose {CHOICES}")


class CrossEncoderReranker:
    def __init__(self, name: str, device: str | None = None, batch_size: int = 16) -> None:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError:
            raise RerankerUnavailable("rerank = cross-encoder needs sentence-transformers: "
                                      "pip install 'docrag[text]'") from None
        from moca_train.checkpoint import quiet_transformers

        folder = Path(name).expanduser()
        if looks_like_folder(name) and not folder.is_dir():
            raise RerankerUnavailable(f"cannot load reranker {name}: no such folder")
        try:
            with quiet_transformers():
                self.model = CrossEncoder(str(folder) if folder.is_dir() else name,
                                          device=None if device in (None, "auto") else device)
        except Exception as e:  # OSError, ValueError, a config transformers cannot read: the model is unusable
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RerankerUnavailable(f"cannot load reranker {name}: {reason}") from e
        self.name = f"{CROSS_ENCODER}{name}"
        self.batch_size = batch_size

    def rerank(self, query: str, hits: list[Hit], index_dir: Path) -> list[Hit]:
        if not hits:
            return hits
        pairs = [(query, hit.text or hit.title or "") for hit in hits]
        scores = self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        order = sorted(range(len(hits)), key=lambda i: -float(scores[i]))  # stable: ties keep retrieval order
        return [dataclasses.replace(hits[i], score=float(scores[i])) for i in order]


class LLMReranker:
    def __init__(self, llm: Any, image_max_side: int = 1024, text_chars: int = 600) -> None:
        self.llm = llm
        self.name = f"llm:{getattr(llm, 'name', 'llm')}"
        self.image_max_side = image_max_side
        self.text_chars = text_chars

    def messages(self, query: str, hits: list[Hit], index_dir: Path) -> list:
        from .llm import ImagePart, Message

        parts: list[Any] = []
        for n, hit in enumerate(hits, 1):
            parts.append(f"[{n}] {Path(hit.doc_path).name}, page {hit.page}:\n")
            image, _why = hit_image(index_dir, hit)
            if image:
                parts.append(ImagePart(Path(image)))
            text = " ".join((hit.text or "").split())[: self.text_chars]
            parts.append(f"\nText of [{n}]: {text or '(none)'}\n\n")
        parts.append(f"Question: {query}\nPage numbers, best first:")
        return [Message("system", [LLM_PROMPT]), Message("user", parts)]

    def rerank(self, query: str, hits: list[Hit], index_dir: Path) -> list[Hit]:
        if len(hits) < 2:
            return hits
        from .llm import LLMError

        try:
            reply = "".join(self.llm.stream(self.messages(query, hits, index_dir), image_max_side=self.image_max_side))
        except LLMError as e:
            raise RerankerUnavailable(f"reranking failed: {str(e).splitlines()[0] if str(e) else 'LLM error'}") from e
        order = parse_order(reply, len(hits))
        return [dataclasses.replace(hits[i], score=1.0 / rank) for rank, i in enumerate(order, 1)]


def parse_order(reply: str, n: int) -> list[int]:
    """0-based hit indices from an LLM's "3, 1, 2": numbers outside 1..n and repeats are ignored, hits it did
    not name follow in their retrieval order."""
    named = []
    for m in re.finditer(r"\d+", reply):
        k = int(m.group()) - 1
        if 0 <= k < n and k not in named:
            named.append(k)
    return named + [i for i in range(n) if i not in named]

"""BM25 sparse vectors for a page's text layer, from Qdrant's own `Bm25` (tokenizer, stop words, stemmer).

Why Qdrant's model rather than a Python one: the same tokenization then runs wherever the index lives
(Edge in-process, or a server with its own BM25 inference), and the IDF half of BM25 is left to the engine
(sparse vector `text` carries the IDF modifier), so documents only carry term frequencies and the scores
stay right as the collection grows or shrinks.

CJK text (Chinese, Japanese, Korean) is first rewritten into overlapping character bigrams
(`indexing.tokenize`), so a word found inside a longer run matches; which CJK mode an index uses is recorded in
its schema (`bm25_cjk`) next to its language, and queries always use the documents' settings.

`Sparse` is a neutral value type: each store backend converts it into its own sparse-vector class, so
nothing above `indexing.store` depends on either Qdrant package.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .tokenize import CJK_MODES, DEFAULT_CJK, pretokenize

DEFAULT_LANGUAGE = "english"


@dataclass(frozen=True)
class Sparse:
    """A sparse vector: parallel lists of term ids (hashed tokens) and weights. Empty for empty text."""

    indices: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.values):
            raise ValueError(f"sparse vector has {len(self.indices)} indices but {len(self.values)} values")

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def is_empty(self) -> bool:
        """True when no term survived tokenization (blank page, only stop words)."""
        return not self.indices


class Bm25Encoder:
    """Embeds documents and queries for one language; document and query sides must use the same one.

    `language` is a Snowball/stop-word language name as Qdrant spells it ("english", "german", "french", ...);
    an unsupported name raises ValueError at construction. `k`, `b` and `avg_len` are BM25's usual knobs
    (Qdrant's defaults: 1.2, 0.75, 256 tokens). `cjk` is how CJK runs are tokenised: "bigram" (overlapping
    character bigrams, the default) or "none" (one token per run, as indexes built before bigrams did).
    """

    def __init__(
        self,
        language: str = DEFAULT_LANGUAGE,
        *,
        k: float | None = None,
        b: float | None = None,
        avg_len: float | None = None,
        cjk: str = DEFAULT_CJK,
    ) -> None:
        from qdrant_edge import Bm25, Bm25Config

        if cjk not in CJK_MODES:
            raise ValueError(f"unknown CJK tokenisation {cjk!r}: choose one of {', '.join(CJK_MODES)}")
        self.language = language
        self.cjk = cjk
        self._model = Bm25(Bm25Config(k=k, b=b, avg_len=avg_len, language=language))

    def embed_document(self, text: str) -> Sparse:
        """Term-frequency weights of a page's text (the engine applies IDF at query time)."""
        if not text or not text.strip():
            return Sparse()
        v = self._model.embed_document(pretokenize(text, self.cjk))
        return Sparse(list(v.indices), list(v.values))

    def embed_query(self, text: str) -> Sparse:
        """Each distinct query term with weight 1.0."""
        if not text or not text.strip():
            return Sparse()
        v = self._model.embed_query(pretokenize(text, self.cjk))
        return Sparse(list(v.indices), list(v.values))


_encoders: dict[tuple[str, str], Bm25Encoder] = {}
_encoders_lock = threading.Lock()


def encoder(language: str = DEFAULT_LANGUAGE, cjk: str = DEFAULT_CJK) -> Bm25Encoder:
    """A shared encoder per (language, CJK mode) (building one compiles stop-word sets and a stemmer)."""
    with _encoders_lock:
        enc = _encoders.get((language, cjk))
        if enc is None:
            enc = _encoders[(language, cjk)] = Bm25Encoder(language, cjk=cjk)
        return enc


def embed_document(text: str, language: str = DEFAULT_LANGUAGE, cjk: str = DEFAULT_CJK) -> Sparse:
    """BM25 document vector of `text` in `language` (empty text -> empty vector)."""
    return encoder(language, cjk).embed_document(text)


def embed_query(text: str, language: str = DEFAULT_LANGUAGE, cjk: str = DEFAULT_CJK) -> Sparse:
    """BM25 query vector of `text` in `language` (empty text -> empty vector)."""
    return encoder(language, cjk).embed_query(text)

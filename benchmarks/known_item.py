"""A small known-item retrieval set built from real manuals, and nDCG@k (a stand-in for `docrag eval`).

Queries: for each page with enough text, a phrase of `PHRASE_WORDS` consecutive words taken from its
born-digital text layer (a seeded choice among windows with at least two words of 6+ letters). Relevant pages:
every page of the set whose text layer contains that phrase (binary relevance). The same queries and
judgements then score any index of the same pages: the born-digital one, an image-only copy with or without
OCR, or another retrieval mode. `split` makes the tuning/held-out halves used to pick fusion settings.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PHRASE_WORDS = 5
MIN_PAGE_WORDS = 40
_WORD = re.compile(r"[a-zà-ÿ]{3,}")


@dataclass(frozen=True)
class Query:
    qid: str
    text: str
    relevant: frozenset[tuple[str, int]]  # (document file name, page)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def build_queries(pages: Sequence[tuple[str, int, str]], seed: int = 0) -> list[Query]:
    """Known-item queries over `pages` = (document name, page number, text layer)."""
    rng = random.Random(seed)
    normalised = {(doc, page): " ".join(_words(text)) for doc, page, text in pages}
    out = []
    for doc, page, text in pages:
        words = _words(text)
        if len(words) < MIN_PAGE_WORDS:
            continue
        starts = [i for i in range(len(words) - PHRASE_WORDS)
                  if sum(len(w) >= 6 for w in words[i : i + PHRASE_WORDS]) >= 2]
        if not starts:
            continue
        i = rng.choice(starts)
        phrase = " ".join(words[i : i + PHRASE_WORDS])
        relevant = frozenset(key for key, norm in normalised.items() if phrase in norm)
        out.append(Query(f"{doc}#{page}", phrase, relevant))
    return out


def ndcg_at_k(ranked: Sequence[tuple[str, int]], relevant: frozenset[tuple[str, int]], k: int = 5) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, key in enumerate(ranked[:k]) if key in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def mean_ndcg(queries: Sequence[Query], search: Callable[[str], list[tuple[str, int]]], k: int = 5) -> float:
    """Mean nDCG@k of `search(query text) -> ranked (document name, page)` over `queries`."""
    if not queries:
        return 0.0
    return sum(ndcg_at_k(search(q.text), q.relevant, k) for q in queries) / len(queries)


def split(queries: Sequence[Query]) -> tuple[list[Query], list[Query]]:
    """Tuning and held-out halves (alternate queries, so both cover every document)."""
    return list(queries[0::2]), list(queries[1::2])


def page_texts(pdfs: Sequence[Path]) -> list[tuple[str, int, str]]:
    import pymupdf

    out = []
    for pdf in pdfs:
        with pymupdf.open(pdf) as doc:
            out.extend((pdf.name, i + 1, p.get_text()) for i, p in enumerate(doc))
    return out

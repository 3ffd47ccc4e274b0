"""What a search tells about each hit page beyond its score: the snippet, the matched terms, and where on the
page they are (highlights).

The query's terms are found in the page text once (`TermMatcher.match_terms`: BM25's own stems, stop words and
CJK bigrams) and those spans serve both the snippet and the boxes, which come from the page's word boxes
(`indexing.words`). A hit with no matched term (found by its picture or its meaning alone) gets no highlight and
a note saying so: boxes are never invented. Patch-level maps from the visual encoder (similarity of the query to
each image patch) would be a third kind of highlight; `patch_highlights` is where they would plug in.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

from indexing.snippets import TermMatcher, TermSpan, make_snippet
from indexing.store import Hit
from indexing.words import WordStore

MAX_HIGHLIGHTS = 200  # boxes per page: a query word on every line of a dense page stays a readable overlay
NO_TERMS = "no query term is on this page: it was found by its picture or its meaning, not its words"
NO_BOXES = "this page has no word boxes yet: run `docrag index` on its folder again to add them"


def annotate_hits(hits: list[Hit], query: str, matcher: TermMatcher, index_dir: Path | str) -> None:
    """Fill each hit's snippet, matched terms and highlights (`Hit.highlights`, `Hit.highlights_note`)."""
    with WordStore(index_dir, create=False) as words:
        for hit in hits:
            text = unicodedata.normalize("NFKC", hit.text or "")
            spans = matcher.match_terms(text, query)
            snippet = make_snippet(text, spans)
            hit.snippet, hit.matched_terms = snippet.text, snippet.terms
            hit.highlights, hit.highlights_note = page_highlights(words, hit, text, spans)


def page_highlights(words: WordStore, hit: Hit, text: str, spans: list[TermSpan]) -> tuple[list[dict], str]:
    """([{box, term}], note): the boxes of the matched terms, or none and why."""
    if not spans:
        return [], NO_TERMS
    page_words = words.words(hit.doc_hash, hit.page)
    if page_words is None:
        return [], NO_BOXES
    out: list[dict[str, Any]] = []
    for span in spans:
        out += [{"box": list(box), "term": span.term} for box in page_words.boxes(span.start, span.end, text)]
        if len(out) >= MAX_HIGHLIGHTS:
            return out[:MAX_HIGHLIGHTS], ""
    return out, ""


def patch_highlights(hit: Hit, query: str) -> list[dict]:
    """Where a visual-only hit would say *where* it matched: boxes from the encoder's patch similarities.

    Not built: MoCa pools the page into one vector, so this needs the per-patch hidden states of the page and the
    query vector (cosine per patch, thresholded, patches mapped to the page's 0-1 grid). It returns none now,
    so a visual-only hit shows no boxes rather than made-up ones.
    """
    return []

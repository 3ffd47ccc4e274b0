"""Snippets: a short passage of a hit page's text around the words that matched the query, those words marked.

A word of the page matches when the index's own BM25 (`Bm25Encoder`: Qdrant's tokenizer, stemmer and stop words,
CJK runs as character bigrams) maps it to one of the query's terms, so "configuring" in a page matches the query
"configure", a stop word never matches, and in Japanese text every bigram the query shares is found inside longer
runs, exactly as BM25 scored them. The passage is the window of about `width` characters that holds the most
distinct matched terms; a page with no matched term (a hit found by the dense or visual vector alone) gets its
opening lines, unmarked.

`match_terms` gives the matched words as character spans of the page text, for anything that wants to point at
them (highlights on the page image, quoted citations).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from .bm25 import Bm25Encoder
from .tokenize import CJK_RUN

MARK = "**"  # matched terms are **marked** (Markdown bold), in --json, the CLI and the UI; a page's own "*" shows
# as U+2217, so splitting a snippet on MARK always gives text, term, text, ...
DEFAULT_WIDTH = 220
_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: what Qdrant's tokenizer splits text into
_CACHE_MAX = 50_000


@dataclass(frozen=True)
class TermSpan:
    """One matched word (or CJK bigram run) of the page text: ``text[start:end]``."""

    start: int
    end: int
    term: str
    ids: frozenset[int] = frozenset()  # the BM25 terms it carries: "configure" and "configuring" share one


@dataclass(frozen=True)
class Snippet:
    text: str  # the passage, matched terms marked with MARK
    terms: list[str] = field(default_factory=list)  # the distinct matched words, as on the page, lower-cased


class TermMatcher:
    """Finds the query's BM25 terms in page texts (one per index: its language and CJK mode)."""

    def __init__(self, bm25: Bm25Encoder) -> None:
        self.bm25 = bm25
        self._ids: dict[str, frozenset[int]] = {}

    def term_ids(self, text: str) -> frozenset[int]:
        """The BM25 term ids of a word or a query (empty for stop words)."""
        key = text.lower()
        ids = self._ids.get(key)
        if ids is None:
            ids = frozenset(self.bm25.embed_query(text).indices)
            if len(self._ids) >= _CACHE_MAX:
                self._ids.clear()
            self._ids[key] = ids
        return ids

    def match_terms(self, text: str, query: str) -> list[TermSpan]:
        """The words of ``text`` (NFKC-normalised, as BM25 saw it) that carry one of the query's terms."""
        wanted = frozenset(self.bm25.embed_query(query).indices)
        if not wanted or not text:
            return []
        text = unicodedata.normalize("NFKC", text)
        spans: list[TermSpan] = []
        for word in _WORD.finditer(text):
            start = word.start()
            for piece, offset, cjk in _split_cjk(word.group()):
                if cjk:
                    spans += self._cjk_spans(piece, start + offset, wanted)
                elif ids := self.term_ids(piece) & wanted:
                    spans.append(TermSpan(start + offset, start + offset + len(piece), piece.lower(), ids))
        return spans

    def _cjk_spans(self, run: str, start: int, wanted: frozenset[int]) -> list[TermSpan]:
        """Matched bigrams of a CJK run, overlapping ones merged into one span (問題 + 題を -> 問題を)."""
        grams = [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
        hit = [self.term_ids(g) & wanted for g in grams]
        spans: list[TermSpan] = []
        i = 0
        while i < len(grams):
            if not hit[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(grams) and hit[j + 1]:
                j += 1
            end = min(len(run), j + 2) if len(run) > 1 else 1
            spans.append(TermSpan(start + i, start + end, run[i:end], frozenset().union(*hit[i : j + 1])))
            i = j + 1
        return spans

    def snippet(self, text: str, query: str, width: int = DEFAULT_WIDTH) -> Snippet:
        text = unicodedata.normalize("NFKC", text or "")
        return make_snippet(text, self.match_terms(text, query), width)


def _split_cjk(word: str) -> list[tuple[str, int, bool]]:
    """A word cut into its CJK runs and the rest: (piece, offset in the word, is CJK)."""
    out, pos = [], 0
    for m in CJK_RUN.finditer(word):
        if m.start() > pos:
            out.append((word[pos : m.start()], pos, False))
        out.append((m.group(), m.start(), True))
        pos = m.end()
    if pos < len(word):
        out.append((word[pos:], pos, False))
    return out


def make_snippet(text: str, spans: list[TermSpan], width: int = DEFAULT_WIDTH) -> Snippet:
    """The window of ~``width`` characters holding the most distinct matched terms, those marked."""
    if not text.strip():
        return Snippet("")
    if not spans:
        lo, hi = _snap(text, 0, width)
        return Snippet(_collapse(_unstar(text[lo:hi])) + (" …" if hi < len(text.rstrip()) else ""))
    best = (-1, -1, 0, 0)  # (distinct terms, matches, -start, end index)
    j = 0
    for i in range(len(spans)):
        j = max(j, i)
        while j + 1 < len(spans) and spans[j + 1].end - spans[i].start <= width:
            j += 1
        window = spans[i : j + 1]
        score = (len(frozenset().union(*(s.ids for s in window))), len(window), -spans[i].start, j)
        best = max(best, score)
    _, _, neg_start, last = best
    first = next(k for k, s in enumerate(spans) if s.start == -neg_start)
    chosen = spans[first : last + 1]
    core_lo, core_hi = chosen[0].start, chosen[-1].end
    pad = max(0, width - (core_hi - core_lo)) // 2
    lo, hi = _snap(text, max(0, core_lo - pad), core_hi + pad)
    lo, hi = min(lo, core_lo), max(hi, core_hi)
    chosen = [s for s in spans if s.start >= lo and s.end <= hi]  # the padding's matches are marked too
    pieces, pos = [], lo
    for s in chosen:
        pieces += [text[pos : s.start], MARK, text[s.start : s.end], MARK]
        pos = s.end
    pieces.append(text[pos:hi])
    body = _collapse("".join(p if p == MARK else _unstar(p) for p in pieces))
    prefix = "… " if text[:lo].strip() else ""
    suffix = " …" if text[hi:].strip() else ""
    terms = list(dict.fromkeys(s.term for s in chosen))
    return Snippet(prefix + body + suffix, terms)


def _snap(text: str, lo: int, hi: int, reach: int = 24) -> tuple[int, int]:
    """Widen [lo, hi) to word boundaries (no word cut in half) by at most ``reach`` characters: text without
    spaces (Japanese, Chinese) is cut where the window ends."""
    hi = min(len(text), hi)
    for _ in range(reach):
        if lo == 0 or text[lo - 1].isspace():
            break
        lo -= 1
    for _ in range(reach):
        if hi == len(text) or text[hi].isspace():
            break
        hi += 1
    return lo, hi


def _unstar(text: str) -> str:
    """The page's own asterisks as U+2217 (looks the same), so MARK in a snippet only ever marks a term."""
    return text.replace("*", "\u2217")


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()

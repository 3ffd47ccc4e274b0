"""Search queries synthesised from a page's text layer: headings, figure/table captions, key sentences.

Made hard on purpose, the way people search: stop words and some content words are dropped, so a query is
never the page's first line verbatim, never a contiguous run of the page's words, and shares at most
`MAX_RUN` consecutive words with its page. Lines that repeat on many pages (running headers, footers) are
never used. Everything is driven by a `random.Random` the caller seeds, so the same page and seed give
the same queries.

Reused beyond evaluation: `docrag train pipeline` builds contrastive (query, page) pairs with
`synthesize_queries` / `page_queries`.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

QUERY_TYPES: tuple[str, ...] = ("heading", "caption", "sentence")
MAX_RUN = 6          # at most this many consecutive words of the page in a query (the tests allow 8)
MIN_WORDS = 3        # shorter queries are too ambiguous to have one right page
MAX_WORDS = 14
DROP_P = 0.3         # chance of dropping each content word beyond the stop words

_WORD = re.compile(r"[^\W_]+(?:['’.\-:][^\W_]+)*")
_TOKEN = re.compile(r"[^\W_]+")
_CAPTION = re.compile(r"^\s*(?:figure|fig\.|table|tab\.|listing|chart|graph|diagram|exhibit)\s*[\dIVXivx]+[.:)]?"
                      r"\s*[-–—:.]?\s*(?P<rest>.+)$", re.IGNORECASE)
_HYPHEN_BREAK = re.compile(r"-\n(?=[a-z])")
_NUMBERED = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.?|[IVX]+\.|[A-Z]\.)\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
STOP_WORDS = frozenset("""
a an and are as at be been but by can could did do does for from had has have he her his how i if in into is it
its may might more most must no not of on or our she should so such than that the their them then there these they
this those to was we were what when where which while who why will with would you your also each other any all
only both very via per le la les de des du un une et en est au aux der die das und ist von zu den el los las y que
""".split())


@dataclass(frozen=True)
class SynthQuery:
    """A query, how it was made (`type`), and the span of page text it came from (`phrase`, normalised)."""

    text: str
    type: str
    phrase: str


def tokens(text: str) -> list[str]:
    """Lower-case alphanumeric tokens: the unit of every verbatim-overlap check."""
    return _TOKEN.findall(text.lower())


def longest_shared_run(query: str, page_text: str) -> int:
    """The longest run of consecutive query tokens that also appears consecutively in the page."""
    q, p = tokens(query), tokens(page_text)
    if not q or not p:
        return 0
    positions: dict[str, list[int]] = {}
    for i, t in enumerate(p):
        positions.setdefault(t, []).append(i)
    best, prev = 0, {}
    for t in q:  # dynamic programme over (query position, page position) matches
        cur = {j: prev.get(j - 1, 0) + 1 for j in positions.get(t, ())}
        if cur:
            best = max(best, max(cur.values()))
        prev = cur
    return best


def repeated_lines(page_texts: Sequence[str], min_pages: int = 3, fraction: float = 0.3) -> frozenset[str]:
    """Normalised lines found on at least ``max(min_pages, fraction * pages)`` pages: headers and footers."""
    counts: Counter[str] = Counter()
    for text in page_texts:
        counts.update({_norm_line(line) for line in text.splitlines() if line.strip()})
    limit = max(min_pages, math.ceil(fraction * len(page_texts)))
    return frozenset(line for line, c in counts.items() if c >= limit)


def candidates(page_text: str, skip_lines: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(span, type) pairs a query could be made from, in page order (see the module docstring)."""
    skip = set(skip_lines)
    lines = [line.strip() for line in page_text.splitlines()]
    lines = [line for line in lines if line and _norm_line(line) not in skip]
    out: list[tuple[str, str]] = []
    body: list[str] = []
    for i, line in enumerate(lines):
        m = _CAPTION.match(line)
        if m and len(tokens(m.group("rest"))) >= MIN_WORDS:
            out.append((m.group("rest"), "caption"))
        elif _is_heading(line, lines[i + 1] if i + 1 < len(lines) else ""):
            out.append((_NUMBERED.sub("", line), "heading"))
        else:
            body.append(line)
    paragraph = _HYPHEN_BREAK.sub("", "\n".join(body)).replace("\n", " ")
    for sentence in _SENTENCE_END.split(paragraph):
        words = _WORD.findall(sentence)
        content = [w for w in words if w.lower() not in STOP_WORDS and len(w) > 2]
        if 8 <= len(words) <= 60 and len(content) >= 5 and sum(c.isalpha() for c in sentence) > 0.6 * len(sentence):
            out.append((sentence.strip(), "sentence"))
    return out


def harden(span: str, page_text: str, rng: random.Random) -> str | None:
    """A query from ``span``: stop words and random content words dropped, at most `MAX_RUN` words shared
    consecutively with the page, never a contiguous run of the page's words; None if too little is left."""
    words = [w for w in _WORD.findall(span) if any(c.isalnum() for c in w)]
    if len(words) > MAX_WORDS + 6:  # a long sentence: a window of it, as a person would remember it
        start = rng.randrange(0, len(words) - (MAX_WORDS + 6) + 1)
        words = words[start : start + MAX_WORDS + 6]
    content = [w for w in words if w.lower() not in STOP_WORDS]
    keep = [w for w in content if rng.random() >= DROP_P or len(content) <= MIN_WORDS + 1]
    while len(keep) > MAX_WORDS:
        del keep[rng.randrange(1, len(keep))]
    if len(keep) < MIN_WORDS:
        keep = content[:MAX_WORDS]
    page_tokens = " " + " ".join(tokens(page_text)) + " "
    while len(keep) >= MIN_WORDS:
        query = " ".join(keep)
        run = longest_shared_run(query, page_text)
        contiguous = f" {' '.join(tokens(query))} " in page_tokens
        if run <= MAX_RUN and not contiguous:
            return query
        # Break the longest shared run (or the contiguous match) by dropping a word inside it.
        del keep[_inner_index(keep, page_text, rng)]
    return None


def page_queries(page_text: str, n: int, rng: random.Random, skip_lines: Iterable[str] = ()) -> list[SynthQuery]:
    """Up to ``n`` distinct queries for one page, alternating kinds (shuffled by ``rng``) so a set of pages
    gets headings, captions and sentences alike; each carries its source phrase for relevance grading."""
    pool: dict[str, list[str]] = {t: [] for t in QUERY_TYPES}
    for span, kind in candidates(page_text, skip_lines):
        pool[kind].append(span)
    for kind in pool:
        if kind == "sentence":  # key sentences first: the most distinctive content words
            pool[kind].sort(key=_sentence_weight, reverse=True)
            pool[kind] = pool[kind][: max(3, 2 * n)]
        rng.shuffle(pool[kind])
    order = list(QUERY_TYPES)
    rng.shuffle(order)
    out: list[SynthQuery] = []
    seen: set[str] = set()
    while len(out) < n and any(pool.values()):
        for kind in order:
            if not pool[kind] or len(out) >= n:
                continue
            span = pool[kind].pop()
            query = harden(span, page_text, rng)
            if query and query.lower() not in seen:
                seen.add(query.lower())
                out.append(SynthQuery(query, kind, " ".join(tokens(span))))
    return out


def synthesize_queries(page_text: str, n: int, rng: random.Random,
                       skip_lines: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Up to ``n`` (query, type) pairs for a page's text; ``type`` is one of `QUERY_TYPES`."""
    return [(q.text, q.type) for q in page_queries(page_text, n, rng, skip_lines)]


def phrase_index(page_text: str) -> str:
    """A page's text as " tok tok … " (hyphenated line breaks joined) for `contains_phrase`; build it once."""
    return " " + " ".join(tokens(_HYPHEN_BREAK.sub("", page_text))) + " "


def contains_phrase(page_index: str, phrase: str) -> bool:
    """Whether a page (its `phrase_index`) holds ``phrase`` as consecutive tokens: grade-1 pages of a query."""
    return bool(phrase) and f" {phrase} " in page_index


# ---- helpers --------------------------------------------------------------------------------------------------
def _norm_line(line: str) -> str:
    return " ".join(tokens(line))


def _is_heading(line: str, following: str) -> bool:
    text = _NUMBERED.sub("", line)
    words = _WORD.findall(text)
    if not MIN_WORDS <= len(words) <= 12 or text.rstrip()[-1:] in ".,;:!?" or not text[:1].isupper():
        return False
    letters = sum(c.isalpha() for c in text)
    if letters < 0.7 * len(text.replace(" ", "")):
        return False
    capitalised = sum(w[:1].isupper() for w in words if w.lower() not in STOP_WORDS)
    numbered = line != text
    # "2.3 Installing the software", "Recommended Versions", or a short line before a longer paragraph line
    return numbered or capitalised >= max(2, len(words) // 2) or len(_WORD.findall(following)) > 2 * len(words)


def _sentence_weight(sentence: str) -> float:
    words = {w.lower() for w in _WORD.findall(sentence) if w.lower() not in STOP_WORDS}
    return sum(math.log(len(w)) for w in words if len(w) > 2)


def _inner_index(keep: list[str], page_text: str, rng: random.Random) -> int:
    """An index inside the longest run of ``keep`` that appears consecutively in the page (never the
    first word, so the query keeps its anchor)."""
    best_start, best_len = 1, 0
    for start in range(len(keep)):
        for end in range(len(keep), start + best_len, -1):
            if longest_shared_run(" ".join(keep[start:end]), page_text) == end - start:
                best_start, best_len = start, end - start
                break
    lo, hi = max(1, best_start), max(1, best_start + best_len - 1)
    return rng.randrange(lo, hi + 1) if hi >= lo and hi < len(keep) else len(keep) - 1

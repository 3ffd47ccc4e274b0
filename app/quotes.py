"""Quoted citations: find the short verbatim quote an answer gives after a citation ``[n] "..."`` in the cited
page's text layer, as a character span, or say that it is not there.

The text layer is what PyMuPDF or OCR made of the page (line breaks, words hyphenated across lines, ligatures,
curly quotes, OCR noise such as "rn" for "m"), and the model's quote is its own retyping of it, so both sides are
compared in a normalised form: NFKC, casefolded, every run of characters that are not letters, digits or marks
(spaces, line breaks, punctuation, curly or straight quotes, dashes) one space, and a hyphen inside a word, also
one followed by a line break ("configu-\\nration"), dropped, so the word joins. Each character of the normalised
page remembers its offset in the NFKC page text, which is what spans are into (as `indexing.snippets` uses).

An exact match of the normalised quote is looked for first (str.find; the first occurrence between words, so
"art" is not found in "start"); a long enough quote not found exactly gets an approximate-substring search
(Sellers' semi-global edit distance: the whole quote against any substring of the page), accepted only when
``1 - distance / len(quote) >= min_score``. Characters alone are not enough on real pages, whose sentences share
most of their words ("stores OCR results every 178 seconds" against the quote "caches OCR results every 841
seconds" scores 0.86), so a fuzzy match must also have each number of the quote whole on the page (OCR's l for 1
and O for 0 forgiven) and at most one word in ten wrong (of three letters or more). A quote that is not on the
page is never pinned to the nearest-looking place: it gets None. Short quotes (under 3 words or 12 characters)
must match exactly, on word boundaries, because a fuzzy match of a few characters is found almost anywhere.

Speed: the DP is vectorised with numpy over page positions, one step per quote character, and stops early once
no alignment can come within the allowed distance. On this project's development VM (2 cores, shared), a
4,000-character page and a 150-character quote with 4 wrong letters take about 10 ms (median of 60 runs; 20 ms
at worst), normalisation, DP and the word check included; an exact quote about 2 ms; a shuffled (absent) quote
about 4 ms; a 40,000-character page about 70 ms.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from indexing.tokenize import CJK_RUN

MIN_WORDS = 3  # shorter quotes: exact matches only
MIN_CHARS = 12
SNAP = 3  # a fuzzy span that stops this close to a word's edge is widened to cover the whole word

# A hyphen (or soft hyphen) between two letters/digits, optionally followed by a line break and indentation:
# the word is joined, on both sides, so "configu-\nration" == "configuration" and "e-mail" == "email".
_JOIN = re.compile(
    r"(?<=[^\W_])[-\u00ad\u2010\u2011](?:[ \t]*(?:\r\n|[\n\r\v\f\x85\u2028\u2029])\s*)?(?=[^\W_])"
)

# A citation: [1], [2, 3]; not "[a]" or "[12.5]" (`app.answer` maps them to pages).
CITE = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
# One or more citations in a row ([2][3]), then the quote: after optional spaces and a colon or dash, in straight
# or curly double quotes or guillemets. A quote may wrap onto the next line but not run past a blank line or 500
# characters (an unclosed quote must not swallow the answer).
_CITES = rf"(?:{CITE.pattern}[ \t]*)+"


def _inside(closers: str) -> str:
    return rf"(?:[^{closers}\n]|\n(?![ \t]*\n)){{1,500}}"


_STRAIGHT = '"(?P<q1>' + _inside('"') + ')"'
_CURLY = "[\u201c\u201e](?P<q2>" + _inside("\u201c\u201d") + ")[\u201d\u201c]"
_GUILLEMETS = "\u00ab(?P<q3>" + _inside("\u00ab\u00bb") + ")\u00bb"
_QUOTED = re.compile(rf"(?P<cites>{_CITES})[ \t]*(?:[:\-\u2013\u2014][ \t]*)?(?:{_STRAIGHT}|{_CURLY}|{_GUILLEMETS})")
_NUMBER = re.compile(r"\d{1,3}")
_CJK_CHAR = CJK_RUN.pattern.removesuffix("+")
_WORD = re.compile(rf"{_CJK_CHAR}|(?:(?!{_CJK_CHAR})\S)+")  # a word of a normalised string; CJK: one character
_OCR_DIGITS = str.maketrans("lio", "110")  # OCR reads 1 as l or I, 0 as O: forgiven inside numbers


@dataclass(frozen=True)
class QuoteMatch:
    """Where a quote is on a page: ``unicodedata.normalize("NFKC", text)[start:end]``."""

    start: int
    end: int
    score: float  # 0..1: 1 - edit distance / length of the normalised quote; 1.0 = exact after normalisation
    exact: bool  # the normalised quote is on the page as it is (the span may be widened to whole words)


def find_quote(text: str, quote: str, *, min_score: float = 0.85) -> QuoteMatch | None:
    """The span of ``quote`` in ``text`` (first occurrence), or None when it is not there closely enough."""
    if not text or not quote:
        return None
    page, starts, ends = _normalise(unicodedata.normalize("NFKC", text))
    q = _normalise(unicodedata.normalize("NFKC", quote))[0]
    if not q or not page:
        return None
    short = _word_count(q) < MIN_WORDS or len(q) < MIN_CHARS

    at = _find_on_boundaries(page, q)
    if at is not None:
        return QuoteMatch(starts[at], ends[at + len(q) - 1], 1.0, True)
    if short:
        return None

    at = page.find(q)  # there, but cut inside a word at an end ("...figuration files"): distance 0, no DP needed
    if at >= 0:
        found: tuple[int, int, int] | None = (0, at, at + len(q))
    else:
        found = _sellers(page, q, int((1.0 - min_score) * len(q) + 1e-9))
    if found is None:
        return None
    distance, a, b = found
    if not _words_agree(page, q, a, b):
        return None
    while a < b and page[a] == " ":
        a += 1
    while b > a and page[b - 1] == " ":
        b -= 1
    if a >= b:
        return None
    a, b = _snap(page, a, b)
    return QuoteMatch(starts[a], ends[b - 1], round(1.0 - distance / len(q), 6), distance == 0)


def extract_quotes(answer: str) -> list[tuple[int, str]]:
    """The (citation number, quote) pairs of an answer, in order: ``[n] "quote"``, ``[2][3]: “quote”``, ...

    Only a quote right after the citation counts (spaces and a colon or dash may come between), so a citation
    with no quote gives nothing and a quoted phrase elsewhere in the answer is not taken for one.
    """
    pairs: dict[tuple[int, str], None] = {}
    for m in _QUOTED.finditer(answer or ""):
        quote = " ".join((m.group("q1") or m.group("q2") or m.group("q3") or "").split())
        if quote:
            for number in _NUMBER.findall(m.group("cites")):
                pairs.setdefault((int(number), quote), None)
    return list(pairs)


def _normalise(text: str) -> tuple[str, list[int], list[int]]:
    """(comparison string, offset in ``text`` of each of its characters, offset after each)."""
    joined = bytearray(len(text))  # 1 where a character is dropped by a hyphen join
    for m in _JOIN.finditer(text):
        joined[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for i, ch in enumerate(text):
        if joined[i]:
            continue
        if ch.isascii():
            if ch.isalnum():
                out.append(ch.lower())
                starts.append(i)
                ends.append(i + 1)
                continue
            kind = "Z"
        else:
            kind = unicodedata.category(ch)[0]
        if kind in "LNM":
            for c in ch.casefold():  # "ß" -> "ss": both characters point at it
                out.append(c)
                starts.append(i)
                ends.append(i + 1)
        elif kind == "C" and ch not in "\t\n\r\v\f\x85":
            continue  # soft hyphen, zero-width space and joiners, BOM: invisible, not a word break
        elif out and out[-1] != " ":
            out.append(" ")
            starts.append(i)
            ends.append(i + 1)
    if out and out[-1] == " ":
        out.pop()
        starts.pop()
        ends.pop()
    return "".join(out), starts, ends


def _is_cjk(ch: str) -> bool:
    return CJK_RUN.match(ch) is not None


def _word_count(s: str) -> int:
    """Words of a normalised string; a CJK character counts as one (CJK has no spaces between words)."""
    return len(_WORD.findall(s))


def _boundary(s: str, k: int) -> bool:
    """Whether position ``k`` of normalised ``s`` is between two words."""
    if k <= 0 or k >= len(s):
        return True
    left, right = s[k - 1], s[k]
    return left == " " or right == " " or _is_cjk(left) or _is_cjk(right)


def _find_on_boundaries(page: str, q: str) -> int | None:
    """The first occurrence of ``q`` in ``page`` that starts and ends between words ("art" is not in "start")."""
    at = page.find(q)
    while at >= 0:
        if _boundary(page, at) and _boundary(page, at + len(q)):
            return at
        at = page.find(q, at + 1)
    return None


def _snap(page: str, a: int, b: int) -> tuple[int, int]:
    """Widen ``[a, b)`` to whole words when a word's edge is at most SNAP characters away."""
    for step in range(1, SNAP + 1):
        if _boundary(page, a):
            break
        if _boundary(page, a - step):
            a -= step
            break
    for step in range(1, SNAP + 1):
        if _boundary(page, b):
            break
        if _boundary(page, b + step):
            b += step
            break
    return a, b


def _sellers(page: str, q: str, max_distance: int) -> tuple[int, int, int] | None:
    """(edit distance, start, end) of the page substring closest to the whole of ``q``, or None when even the
    closest is more than ``max_distance`` edits away.

    Sellers' DP, one row per quote character, vectorised over page positions. Each cell holds
    ``cost * big + start`` (start: where in the page its alignment began), so minima keep the start of the
    alignment they come from and break ties on cost by the earliest start. The insertion pass
    ``D[j] = min(D[j], D[j-1] + 1)`` is a running minimum of ``D[j] - j`` (``np.minimum.accumulate``).
    """
    import numpy as np

    n = len(page)
    big = n + 1
    codes = np.frombuffer(page.encode("utf-32-le"), dtype=np.uint32)
    ramp = np.arange(n + 1, dtype=np.int64) * big
    row = np.arange(n + 1, dtype=np.int64)  # row 0: cost 0 anywhere, the alignment starting there
    new = np.empty_like(row)
    up = np.empty_like(row)
    mismatch: dict[str, np.ndarray] = {}
    for i, ch in enumerate(q, 1):
        sub = mismatch.get(ch)
        if sub is None:
            sub = mismatch[ch] = (codes != ord(ch)).astype(np.int64) * big
        np.add(row[:-1], sub, out=new[1:])  # q[i-1] aligned with page[j-1] (match or substitution)
        np.add(row, big, out=up)  # q[i-1] left out
        np.minimum(new, up, out=new)
        new[0] = i * big  # all of q[:i] left out, before page[0]
        new -= ramp
        np.minimum.accumulate(new, out=new)  # page[j-1] left out (an extra page character)
        new += ramp
        row, new = new, row
        if i % 16 == 0 and int(row.min()) // big > max_distance:
            return None  # a row's minimum never decreases: the quote cannot come within max_distance
    last = row[1:]
    j = int(np.argmin(last))  # the least cost, then the earliest start: the first occurrence
    distance, start = divmod(int(last[j]), big)
    if distance > max_distance:
        return None
    return distance, start, j + 1


def _align(q: str, window: str) -> list[tuple[int | None, int | None]]:
    """An optimal global alignment of ``q`` with ``window``: (quote index, window index) pairs, None for a gap."""
    import numpy as np

    m, n = len(q), len(window)
    codes = np.frombuffer(window.encode("utf-32-le"), dtype=np.uint32)
    ramp = np.arange(n + 1, dtype=np.int64)
    rows = np.empty((m + 1, n + 1), dtype=np.int64)
    rows[0] = ramp
    for i in range(1, m + 1):
        row = rows[i]
        row[0] = i
        np.minimum(rows[i - 1, :-1] + (codes != ord(q[i - 1])), rows[i - 1, 1:] + 1, out=row[1:])
        row -= ramp
        np.minimum.accumulate(row, out=row)
        row += ramp
    d = rows.tolist()
    ops: list[tuple[int | None, int | None]] = []
    i, j = m, n
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (q[i - 1] != window[j - 1]):
            i, j = i - 1, j - 1
            ops.append((i, j))
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            i -= 1
            ops.append((i, None))
        else:
            j -= 1
            ops.append((None, j))
    ops.reverse()
    return ops


def _words_agree(page: str, q: str, a: int, b: int) -> bool:
    """Whether the quote's words, aligned with ``page[a:b]``, say what the page says, not only look like it.

    Character distance alone accepts a sentence of the page's own vocabulary with a word or a number swapped
    ("stores OCR results every 178 seconds" for "caches OCR results every 841 seconds" scores 0.86), so the
    fuzzy match must also have every number of the quote on the page as a whole number (up to OCR's l/I for 1
    and O for 0), and at most one word in ten wrong (more than half its characters edited; words of one or two
    letters do not count, a CJK character does).
    """
    ops = _align(q, page[a:b])
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for k, (i, _j) in enumerate(ops):
        if i is not None:
            first.setdefault(i, k)
            last[i] = k
    words = list(_WORD.finditer(q))
    wrong = 0
    for word in words:
        span = ops[first[word.start()] : last[word.end() - 1] + 1]
        edits = sum(1 for i, j in span if i is None or j is None or q[i] != page[a + j])
        if 2 * edits > len(word.group()) and (len(word.group()) > 2 or _is_cjk(word.group())):
            wrong += 1  # "a" for "the" is a slip; "caches" for "stores" is another sentence
        if any(c.isdigit() for c in word.group()):
            cols = [j for _i, j in span if j is not None]
            if not cols:
                return False
            lo, hi = a + cols[0], a + cols[-1] + 1
            while not _boundary(page, lo):
                lo -= 1
            while not _boundary(page, hi):
                hi += 1
            if page[lo:hi].replace(" ", "").translate(_OCR_DIGITS) != word.group().translate(_OCR_DIGITS):
                return False
    return wrong <= len(words) // 10

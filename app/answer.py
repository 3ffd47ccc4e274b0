"""Grounded answers: the prompt (retrieved pages numbered [1]..[k], each as its image and text layer), the
streamed answer, and its citations mapped back to (document, page).

A number the model cites that is not one of the retrieved pages is dropped from the citation list and the
answer says so; it is never mapped to some other page. A citation's quote (`[2] "..."`) is looked for on that
page's text (`app.quotes`: fuzzy, tolerant to hyphenation, ligatures and OCR noise) and, when found, given its
boxes on the page (`indexing.words`); a quote that is not there is ``found: false`` and said in one line, never
pinned anywhere.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from indexing.store import Hit

from .llm import LLM, ImagePart, Message
from .page_image import hit_image
from .quotes import CITE, extract_quotes, find_quote

SYSTEM_PROMPT = (
    "You answer questions about documents using only the numbered pages you are given. Each page comes as "
    "an image and its text layer. Cite the pages you use with their numbers in square brackets, e.g. [1] or "
    "[2][3], right after the statement they support, each followed by a short verbatim quote from that page in "
    'double quotes, e.g. [2] "the exact words on the page". If the pages do not contain the answer, say so.'
)



@dataclass
class Citation:
    n: int
    doc: str
    page: int
    image: str
    score: float
    quote: str = ""  # the verbatim quote the answer gives after [n] ("" when it gives none)
    boxes: list[list[float]] = field(default_factory=list)  # where the quote is on the page, 0-1 of the page
    found: bool | None = None  # whether the quote is on the page (None: no quote)


@dataclass
class Answer:
    answer: str
    citations: list[Citation] = field(default_factory=list)
    pages: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)  # numbers the model made up (no such retrieved page)
    unfound: list[Citation] = field(default_factory=list)  # citations whose quote is not on their page

    def as_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "citations": [asdict(c) for c in self.citations], "pages": self.pages}


def build_messages(question: str, hits: list[Hit], index_dir: Path, text_chars: int = 1500) -> list[Message]:
    parts: list[str | ImagePart] = []
    for n, hit in enumerate(hits, 1):
        parts.append(f"[{n}] {Path(hit.doc_path).name}, page {hit.page}:\n")
        image, _why = hit_image(index_dir, hit)
        if image:  # a page whose source is gone and has no stored image goes to the LLM as text only
            parts.append(ImagePart(Path(image)))
        text = " ".join((hit.text or "").split())[:text_chars]
        parts.append(f"\nText layer of [{n}]: {text or '(none)'}\n\n")
    parts.append(f"Question: {question}")
    return [Message("system", [SYSTEM_PROMPT]), Message("user", parts)]


def cited_numbers(text: str) -> list[int]:
    """The citation numbers in `text`, in order of first appearance, each once."""
    seen: dict[int, None] = {}
    for match in CITE.finditer(text):
        for number in match.group(1).split(","):
            seen.setdefault(int(number), None)
    return list(seen)


def map_citations(text: str, hits: list[Hit], index_dir: Path) -> tuple[list[Citation], list[int]]:
    """(citations of retrieved pages, made-up numbers): [n] maps to hits[n-1] only when 1 <= n <= len(hits)."""
    from indexing.words import WordStore

    quotes: dict[int, str] = {}
    for n, quote in extract_quotes(text):
        quotes.setdefault(n, quote)
    citations, invalid = [], []
    with WordStore(index_dir, create=False) as words:
        for n in cited_numbers(text):
            if not 1 <= n <= len(hits):
                invalid.append(n)
                continue
            h = hits[n - 1]
            image, _why = hit_image(index_dir, h)
            c = Citation(n, h.doc_path, h.page, image or "", round(float(h.score), 6))
            if n in quotes:
                _place_quote(c, quotes[n], h, words)
            citations.append(c)
    return citations, invalid


def _place_quote(c: Citation, quote: str, hit: Hit, words) -> None:
    c.quote = quote
    match = find_quote(hit.text or "", quote)
    c.found = match is not None
    if match is not None:
        page_words = words.words(hit.doc_hash, hit.page)
        if page_words is not None:
            text = unicodedata.normalize("NFKC", hit.text or "")
            c.boxes = [list(b) for b in page_words.boxes(match.start, match.end, text)]


def invalid_note(invalid: list[int], n_pages: int) -> str:
    cited = ", ".join(f"[{n}]" for n in invalid)
    return (f"\n\n(Note: the answer cites {cited}, which {'is' if len(invalid) == 1 else 'are'} not among the "
            f"{n_pages} retrieved pages; dropped from the citations.)")


def unfound_note(unfound: list[Citation]) -> str:
    return "".join(f"\n(Note: the quote given for [{c.n}] is not on {Path(c.doc).name} page {c.page}; "
                   "it is not highlighted.)" for c in unfound)


def finish(text: str, hits: list[Hit], index_dir: Path) -> Answer:
    from .service import hit_to_dict

    citations, invalid = map_citations(text, hits, index_dir)
    if invalid:
        text += invalid_note(invalid, len(hits))
    unfound = [c for c in citations if c.found is False]
    if unfound:
        text += ("" if invalid else "\n") + unfound_note(unfound)
    return Answer(text, citations, [hit_to_dict(h, index_dir) for h in hits], invalid, unfound)


NO_PAGES = "No indexed page matches the question, so there is nothing to answer from."


class AnswerStream:
    """Iterate for the answer's text chunks as the model streams them; `result()` for the final `Answer`.

    Single pass: iterating again (or `result()` after a partial read) continues where the reader stopped.
    The LLM is called only when iterated (or on `result()`); with no retrieved page it is not called at all.
    """

    def __init__(self, llm: LLM, question: str, hits: list[Hit], index_dir: Path, *, text_chars: int = 1500,
                 image_max_side: int | None = 1024) -> None:
        self.llm, self.question, self.hits, self.index_dir = llm, question, hits, Path(index_dir)
        self.text_chars, self.image_max_side = text_chars, image_max_side
        self._chunks: list[str] = []
        self._answer: Answer | None = None
        self._source: Iterator[str] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._source is None:
            self._source = self._generate()
        return self._source

    def _generate(self) -> Iterator[str]:
        if not self.hits:
            self._chunks.append(NO_PAGES)
            self._answer = Answer(NO_PAGES)
            yield NO_PAGES
            return
        messages = build_messages(self.question, self.hits, self.index_dir, self.text_chars)
        for chunk in self.llm.stream(messages, image_max_side=self.image_max_side):
            self._chunks.append(chunk)
            yield chunk
        streamed = "".join(self._chunks)
        self._answer = finish(streamed, self.hits, self.index_dir)
        note = self._answer.answer[len(streamed):]  # what finish() added: made-up numbers, quotes not found
        if note:
            self._chunks.append(note)
            yield note

    @property
    def text(self) -> str:
        """The text streamed so far."""
        return "".join(self._chunks)

    def result(self) -> Answer:
        """The finished answer (reads the rest of the stream first). Raises `LLMError` if the model fails."""
        for _ in self:
            pass
        if self._answer is None:
            raise RuntimeError("the answer stream was closed before it finished")
        return self._answer

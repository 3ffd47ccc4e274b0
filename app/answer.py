"""Grounded answers: the prompt (retrieved pages numbered [1]..[k], each as its image and text layer), the
streamed answer, and its citations mapped back to (document, page).

A number the model cites that is not one of the retrieved pages is dropped from the citation list and the
answer says so; it is never mapped to some other page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from indexing.store import Hit

from .llm import LLM, ImagePart, Message
from .page_image import hit_image

SYSTEM_PROMPT = (
    "You answer questions about documents using only the numbered pages you are given. Each page comes as "
    "an image and its text layer. Cite the pages you use with their numbers in square brackets, e.g. [1] or "
    "[2][3], right after the statement they support. If the pages do not contain the answer, say so."
)

# [1], [2, 3], [2][3]; not "[a]" or "[12.5]".
_CITE = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


@dataclass
class Citation:
    n: int
    doc: str
    page: int
    image: str
    score: float


@dataclass
class Answer:
    answer: str
    citations: list[Citation] = field(default_factory=list)
    pages: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)  # numbers the model made up (no such retrieved page)

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
    for match in _CITE.finditer(text):
        for number in match.group(1).split(","):
            seen.setdefault(int(number), None)
    return list(seen)


def map_citations(text: str, hits: list[Hit], index_dir: Path) -> tuple[list[Citation], list[int]]:
    """(citations of retrieved pages, made-up numbers): [n] maps to hits[n-1] only when 1 <= n <= len(hits)."""
    citations, invalid = [], []
    for n in cited_numbers(text):
        if 1 <= n <= len(hits):
            h = hits[n - 1]
            image, _why = hit_image(index_dir, h)
            citations.append(Citation(n, h.doc_path, h.page, image or "", round(float(h.score), 6)))
        else:
            invalid.append(n)
    return citations, invalid


def invalid_note(invalid: list[int], n_pages: int) -> str:
    cited = ", ".join(f"[{n}]" for n in invalid)
    return (f"\n\n(Note: the answer cites {cited}, which {'is' if len(invalid) == 1 else 'are'} not among the "
            f"{n_pages} retrieved pages; dropped from the citations.)")


def finish(text: str, hits: list[Hit], index_dir: Path) -> Answer:
    from .service import hit_to_dict

    citations, invalid = map_citations(text, hits, index_dir)
    if invalid:
        text += invalid_note(invalid, len(hits))
    return Answer(text, citations, [hit_to_dict(h, index_dir) for h in hits], invalid)


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
        self._answer = finish("".join(self._chunks), self.hits, self.index_dir)
        if self._answer.invalid:
            note = invalid_note(self._answer.invalid, len(self.hits))
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

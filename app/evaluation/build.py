"""`docrag eval build`: a synthetic evaluation set from the user's own PDFs, in the BEIR layout.

Every page of every PDF is in the corpus. Pages are split (seeded) into test and train; queries are made
from each page's text (`queries.py`, or an LLM through a `QuestionWriter`); a query's own page is graded
2 and every other page that contains its source phrase 1. The folder gets::

    corpus.jsonl  queries.jsonl  qrels.tsv     the test pages' queries (what `docrag eval` scores)
    train/{corpus,queries}.jsonl  train/qrels.tsv   the train pages' queries (training data, never scored)
    split.json    {"seed", "test_fraction", "test": [page ids], "train": [page ids]}
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from indexing.render import DocumentError, make_renderer
from indexing.scan import scan

from .queries import contains_phrase, page_queries, phrase_index, repeated_lines, tokens

SOURCE_GRADE, MENTION_GRADE = 2, 1
# Pages with fewer words than this get no queries (scans, blank pages), but stay in the corpus.
MIN_PAGE_WORDS = 20


@runtime_checkable
class QuestionWriter(Protocol):
    """Writes questions about one page (an LLM, in practice). ``image_path`` is the page rendered as a file."""

    def questions(self, page_text: str, image_path: Path, n: int) -> list[str]: ...


class LLMUnavailable(RuntimeError):
    pass


def llm_question_writer(config) -> QuestionWriter:
    """The configured LLM as a `QuestionWriter`, or `LLMUnavailable` saying why there is none.

    Hook for the LLM client (``app/llm``): when it exists and an endpoint is configured, wrap it here.
    """
    try:
        import app.llm as llm  # noqa: F401  (the answers issue's client)
    except ImportError:
        raise LLMUnavailable("no LLM configured: this install has no LLM client (app/llm); "
                             "build without --llm to synthesise queries from the page text") from None
    factory = getattr(llm, "question_writer", None)
    writer = factory(config) if callable(factory) else None
    if writer is None:
        raise LLMUnavailable("no LLM configured: set an LLM endpoint in docrag.toml (see README) "
                             "or build without --llm")
    return writer


@dataclass
class PageText:
    id: str
    pdf: Path
    page: int
    text: str


@dataclass
class BuildReport:
    documents: int = 0
    pages: int = 0
    test_pages: int = 0
    train_pages: int = 0
    test_queries: int = 0
    train_queries: int = 0
    types: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("documents", "pages", "test_pages", "train_pages", "test_queries",
                                              "train_queries", "types")} | {
            "problems": [{"path": p, "reason": r} for p, r in self.problems]}


def split_pages(page_ids: Sequence[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(test, train), disjoint, covering all pages; the same ids, fraction and seed give the same split."""
    if not 0 < test_fraction <= 1:
        raise ValueError(f"--split is the fraction of pages held out for testing, in (0, 1]; got {test_fraction}")
    ids = sorted(page_ids)
    random.Random(f"split:{seed}").shuffle(ids)
    n_test = min(len(ids), max(1, round(test_fraction * len(ids)))) if ids else 0
    return sorted(ids[:n_test]), sorted(ids[n_test:])


def read_pages(paths: Sequence[str | Path], on_problem: Callable[[str, str], None] | None = None,
               on_page: Callable[[], None] | None = None) -> list[PageText]:
    """The text layer of every page of every PDF under ``paths`` (through indexing's renderer)."""
    files, problems = scan(paths)
    for p in problems:
        _report(on_problem, str(p.path), p.reason)
    renderer = make_renderer("pymupdf", dpi=8, max_pixels=64 * 64)  # the text is what we need, not pixels
    pages: list[PageText] = []
    slugs: set[str] = set()
    for src in files:
        if src.kind != "pdf":
            _report(on_problem, str(src.path), "skipped: an image has no text layer to make queries from")
            continue
        slug = _slug(src.path, slugs)
        try:
            for page in renderer.render(src.path, on_problem=lambda p: _report(on_problem, str(p.path), p.reason)):
                pages.append(PageText(f"{slug}-p{page.number}", src.path, page.number, page.text))
                if on_page:
                    on_page()
        except DocumentError as e:
            _report(on_problem, str(src.path), e.reason)
    return pages


def build_eval_set(paths: Sequence[str | Path], out: str | Path, queries_per_page: int = 1, split: float = 0.2,
                   seed: int = 0, writer: QuestionWriter | None = None,
                   on_problem: Callable[[str, str], None] | None = None,
                   on_page: Callable[[], None] | None = None) -> BuildReport:
    """Write an evaluation set for the PDFs under ``paths`` into ``out`` (see the module docstring)."""
    out = Path(out).expanduser().absolute()
    if queries_per_page < 1:
        raise ValueError("--queries-per-page must be at least 1")
    report = BuildReport()
    pages = read_pages(paths, lambda p, r: (report.problems.append((p, r)), _report(on_problem, p, r)), on_page)
    if not pages:
        raise ValueError("no PDF page could be read from " + ", ".join(map(str, paths)))
    test_ids, train_ids = split_pages([p.id for p in pages], split, seed)
    report.documents = len({p.pdf for p in pages})
    report.pages, report.test_pages, report.train_pages = len(pages), len(test_ids), len(train_ids)
    by_doc: dict[Path, list[PageText]] = {}
    for p in pages:
        by_doc.setdefault(p.pdf, []).append(p)
    skip = {pdf: repeated_lines([p.text for p in doc]) for pdf, doc in by_doc.items()}
    index = {p.id: phrase_index(p.text) for p in pages}
    made: dict[str, list[tuple[str, str, str]]] = {}  # page id -> (query, type, phrase)
    for p in pages:
        if len(tokens(p.text)) < MIN_PAGE_WORDS:
            continue
        rng = random.Random(f"{seed}:{p.id}")  # a page's queries do not depend on the other pages
        if writer is not None:
            made[p.id] = _llm_queries(writer, p, queries_per_page)
        else:
            made[p.id] = [(q.text, q.type, q.phrase) for q in page_queries(p.text, queries_per_page, rng, skip[p.pdf])]
    if not any(made.get(pid) for pid in test_ids):
        raise ValueError("no query could be made from the test pages (no text layer, or every line repeats "
                         "on many pages); try a larger --split or more documents")
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"_id": p.id, "pdf": os.path.relpath(p.pdf, out), "page": p.page} for p in pages]
    report.test_queries = _write_split(out, rows, pages, test_ids, made, index, report)
    train_dir = out / "train"
    if train_ids:
        train_rows = [{**r, "pdf": os.path.relpath(p.pdf, train_dir)} for r, p in zip(rows, pages, strict=True)]
        report.train_queries = _write_split(train_dir, train_rows, pages, train_ids, made, index, report)
    _write(out / "split.json", json.dumps({"seed": seed, "test_fraction": split, "test": test_ids,
                                           "train": train_ids}, indent=1) + "\n")
    return report


def _write_split(folder: Path, rows: list[dict], pages: list[PageText], ids: list[str],
                 made: dict[str, list[tuple[str, str, str]]], index: dict[str, str], report: BuildReport) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    queries, qrels = [], ["query-id\tcorpus-id\tscore"]
    for pid in ids:
        for i, (text, kind, phrase) in enumerate(made.get(pid, ()), 1):
            qid = f"{pid}-q{i}"
            queries.append(json.dumps({"_id": qid, "text": text, "type": kind}, ensure_ascii=False))
            report.types[kind] = report.types.get(kind, 0) + 1
            qrels.append(f"{qid}\t{pid}\t{SOURCE_GRADE}")
            # Other pages holding the same phrase answer the query too (the same heading, a repeated sentence).
            qrels += [f"{qid}\t{p.id}\t{MENTION_GRADE}" for p in pages
                      if p.id != pid and contains_phrase(index[p.id], phrase)]
    _write(folder / "corpus.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    _write(folder / "queries.jsonl", "".join(q + "\n" for q in queries))
    _write(folder / "qrels.tsv", "\n".join(qrels) + "\n")
    return len(queries)


def _llm_queries(writer: QuestionWriter, page: PageText, n: int) -> list[tuple[str, str, str]]:
    renderer = make_renderer("pymupdf")  # the page as a reader (and a vision LLM) sees it, 144 dpi
    with tempfile.TemporaryDirectory(prefix="docrag-eval-page-") as tmp:
        image = next(iter(renderer.render(page.pdf, pages=[page.page])), None)
        if image is None:
            return []
        path = Path(tmp) / "page.png"
        image.image.save(path)
        questions = writer.questions(page.text, path, n)
    # An LLM question has no source phrase: only its own page is graded relevant.
    return [(q.strip(), "llm", "") for q in questions[:n] if q and q.strip()]


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _slug(path: Path, taken: set[str]) -> str:
    name = path.name
    for suffix in (".pdf.gz", ".pdf"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    base = re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-") or "doc"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def _report(on_problem: Callable[[str, str], None] | None, path: str, reason: str) -> None:
    if on_problem is not None:
        on_problem(path, reason)

"""The data phases of `docrag train pipeline`: CPT rows and contrastive pairs from the TRAIN pages only.

The evaluation set (`app.evaluation.build`) decides the split; this module keeps its test pages out of
everything trained on:

- `build_train_cpt_data`: every train page as a CPT row (page image + text layer) through
  `moca_train.data.build_cpt_data`, with a ``pages.json`` beside it naming each row's (pdf, page, image).
- `build_page_pairs`: (query -> page image) pairs, the queries synthesised from each train page's text
  (`app.evaluation.queries.page_queries`: headings, captions, key sentences, hardened the way people
  search), plus the evaluation set's own train queries (LLM-written ones with ``--llm``).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .evaluation.build import read_pages
from .evaluation.dataset import load_dataset
from .evaluation.queries import page_queries, repeated_lines

PAGES_FILE = "pages.json"  # beside the CPT JSONL: [{"pdf", "page", "image"}], image relative to the JSONL
PAIR_SOURCE = "pages"      # the pair rows' source (task) name


def held_out_pages(eval_dir: Path) -> set[tuple[str, int]]:
    """(resolved pdf path, page) of every page the evaluation set holds out for testing."""
    split = json.loads((eval_dir / "split.json").read_text())
    test = set(split["test"])
    ds = load_dataset(eval_dir)
    return {(str(row.path), row.page) for row in ds.corpus if row.id in test}


@dataclass
class CPTDataReport:
    pages: int = 0
    documents: int = 0
    problems: list[str] = field(default_factory=list)


def build_train_cpt_data(pdfs: Sequence[str | Path], out_jsonl: Path, exclude: set[tuple[str, int]], dpi: int,
                         progress: Callable[[int], None] | None = None) -> CPTDataReport:
    """CPT rows for every page of ``pdfs`` not in ``exclude``; writes ``pages.json`` beside the JSONL."""
    from moca_train.data import build_cpt_data

    out_jsonl.parent.mkdir(parents=True, exist_ok=True)
    report = build_cpt_data(pdfs, out_jsonl, dpi=dpi, keep=lambda pdf, page: (str(pdf), page) not in exclude,
                            progress=(lambda _name, n: progress(n)) if progress else None)
    pages = [{"pdf": pdf, "page": page, "image": image} for (pdf, page), image in report.images.items()]
    tmp = out_jsonl.parent / f".{PAGES_FILE}.tmp"
    tmp.write_text(json.dumps(pages, indent=1) + "\n")
    tmp.replace(out_jsonl.parent / PAGES_FILE)
    return CPTDataReport(report.pages, report.documents, list(report.problems))


def page_images(cpt_jsonl: Path) -> dict[tuple[str, int], Path]:
    """(pdf, page) -> absolute page image, from the ``pages.json`` `build_train_cpt_data` wrote."""
    folder = cpt_jsonl.parent
    rows = json.loads((folder / PAGES_FILE).read_text())
    return {(r["pdf"], int(r["page"])): (folder / r["image"]).absolute() for r in rows}


@dataclass
class PairsReport:
    rows: int = 0
    pages: int = 0
    types: dict[str, int] = field(default_factory=dict)


def build_page_pairs(pdfs: Sequence[str | Path], eval_dir: Path, cpt_jsonl: Path | None, out_jsonl: Path,
                     queries_per_page: int, seed: int) -> PairsReport:
    """Pair rows (query -> its train page's image) in the pair JSONL format of `moca_train.data.pairs`; without
    ``cpt_jsonl`` (whose rows hold the page images), query -> the page's text: MoCa's text-text pairs.

    Queries are synthesised from each train page's text with a seed of their own (not the evaluation's);
    the evaluation set's train queries are added too. A test page never appears, not even as an image."""
    from moca_train.data.pairs import write_pairs

    images = page_images(cpt_jsonl) if cpt_jsonl is not None else None
    held_out = held_out_pages(eval_dir)
    pages = [p for p in read_pages(pdfs)
             if (images is None or (str(p.pdf), p.page) in images) and (str(p.pdf), p.page) not in held_out]
    texts = {(str(p.pdf), p.page): p.text for p in pages}
    by_doc: dict[Path, list[str]] = {}
    for p in pages:
        by_doc.setdefault(p.pdf, []).append(p.text)
    skip = {pdf: repeated_lines(texts) for pdf, texts in by_doc.items()}
    report = PairsReport()
    rows: list[dict] = []
    seen: set[tuple[str, int, str]] = set()

    def add(query: str, kind: str, pdf: str, page: int) -> None:
        key = (pdf, page, query.lower())
        if not query.strip() or key in seen:
            return
        seen.add(key)
        if images is None:
            positive = {"pos": texts[(pdf, page)]}
        else:
            positive = {"pos_image": os.path.relpath(images[(pdf, page)], out_jsonl.parent.absolute())}
        rows.append({"query": query, **positive, "source": PAIR_SOURCE, "pos_doc": pdf, "pos_page": page})
        report.types[kind] = report.types.get(kind, 0) + 1

    for p in pages:
        rng = random.Random(f"pairs:{seed}:{p.pdf}:{p.page}")
        for q in page_queries(p.text, queries_per_page, rng, skip[p.pdf]):
            add(q.text, q.type, str(p.pdf), p.page)
    for pdf, page, text, kind in _eval_train_queries(eval_dir):
        if (pdf, page) in texts:  # a train page (with its image, for image pairs)
            add(text, kind, pdf, page)
    report.pages = len({(r["pos_doc"], r["pos_page"]) for r in rows})
    report.rows = write_pairs(rows, out_jsonl) if rows else 0
    return report


def _eval_train_queries(eval_dir: Path) -> list[tuple[str, int, str, str]]:
    """(pdf, page, query, type) of the evaluation set's train/ queries (their grade-2 page)."""
    train = eval_dir / "train"
    if not (train / "corpus.jsonl").is_file():
        return []
    ds = load_dataset(train)
    corpus = {row.id: row for row in ds.corpus}
    out = []
    for q in ds.queries:
        own = [cid for cid, grade in ds.qrels.get(q.id, {}).items() if grade == max(ds.qrels[q.id].values())]
        if own and own[0] in corpus:
            row = corpus[own[0]]
            out.append((str(row.path), row.page, q.text, q.fields.get("type", "train")))
    return out

"""Hard negatives for pair files: the top pages a retriever finds for each query that are not its answer.

The retriever is any ``search(query) -> [Candidate]`` (docrag's CLI passes one over an index, with a
trained encoder or BM25; this module never touches an index itself). A candidate is skipped when it is
the positive (same page image, or the row's ``pos_doc``/``pos_page``), when it lies in the positive's
document within ``window`` pages of it (neighbouring pages often answer the query too), or when the row
already holds it. Negatives take the positive's modality: page images for an image positive, page text
for a text positive.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .pairs import PairRow


@dataclass(frozen=True)
class Candidate:
    """One retrieved page: its document, page number (1-based), page image path (absolute) and text."""

    doc: str
    page: int
    image: str
    text: str = ""


@dataclass
class MiningReport:
    rows: int = 0
    negatives: int = 0
    short: int = 0  # rows that got fewer negatives than asked for


def _resolve(ref: str | None, base_dir: str) -> str | None:
    if ref is None or ref.startswith("data:"):
        return ref
    p = Path(ref)
    return str((p if p.is_absolute() else Path(base_dir) / p).resolve())


def _same_doc(a: str, b: str) -> bool:
    if a == b:
        return True
    # A row may name its document by file name only.
    return (os.sep not in b and Path(a).name == b) or (os.sep not in a and Path(b).name == a)


def select_negatives(row: PairRow, candidates: Iterable[Candidate], k: int, window: int = 0) -> list[Candidate]:
    """Up to ``k`` candidates that are neither the positive nor its neighbours (see module docstring)."""
    pos_image = _resolve(row.pos_image, row.base_dir)
    cands = list(candidates)
    pos_doc, pos_page = row.pos_doc, row.pos_page
    if pos_image is not None and (pos_doc is None or pos_page is None):
        for c in cands:  # learn which page the positive is from the retriever's own hit on it
            if str(Path(c.image).resolve()) == pos_image:
                pos_doc, pos_page = c.doc, c.page
                break
    have = {_resolve(i, row.base_dir) for i in row.neg_images} | set(row.negs)
    picked: list[Candidate] = []
    for c in cands:
        if len(picked) >= k:
            break
        image = str(Path(c.image).resolve())
        if image == pos_image or (row.pos is not None and row.pos_image is None and c.text.strip() == row.pos.strip()):
            continue
        if pos_doc is not None and _same_doc(c.doc, pos_doc) and (pos_page is None or abs(c.page - pos_page) <= window):
            continue
        if image in have or c.text in have:
            continue
        picked.append(c)
        have.add(image)
    return picked


def mine_hard_negatives(
    rows: Iterable[PairRow],
    search: Callable[[str], list[Candidate]],
    k: int = 2,
    window: int = 1,
    replace_existing: bool = False,
    report: MiningReport | None = None,
) -> Iterator[PairRow]:
    """Each row with up to ``k`` mined hard negatives added (or instead of its own, ``replace_existing``)."""
    report = report if report is not None else MiningReport()
    for row in rows:
        base = replace(row, negs=[], neg_images=[]) if replace_existing else row
        picked = select_negatives(base, search(row.query), k, window)
        report.rows += 1
        report.negatives += len(picked)
        report.short += len(picked) < k
        # Images of the input row are resolved, so the output file may live anywhere.
        neg_images = [_resolve(i, base.base_dir) for i in base.neg_images]
        negs = list(base.negs)
        if row.pos_image is not None:
            neg_images += [c.image for c in picked]
        else:
            negs += [c.text for c in picked]
        yield replace(base, query_image=_resolve(base.query_image, base.base_dir),
                      pos_image=_resolve(base.pos_image, base.base_dir), negs=negs, neg_images=neg_images)


__all__ = ["Candidate", "MiningReport", "mine_hard_negatives", "select_negatives"]

"""Evaluation sets on disk: the BEIR / ViDoRe-v2 layout, the ViDoRe-v1 QA layout, HF datasets saved to disk.

BEIR / ViDoRe-v2 (what `docrag eval build` writes)::

    corpus.jsonl   {"_id": "p1", "image": "pages/a.png"}  or  {"_id": "p2", "pdf": "docs/x.pdf", "page": 3}
    queries.jsonl  {"_id": "q1", "text": "...", "type": "heading"}   (extra string fields name subsets)
    qrels.tsv      query-id <TAB> corpus-id <TAB> score     (a header line, graded scores)

(``qrels/test.tsv`` is read when ``qrels.tsv`` is absent, as in BEIR.) ViDoRe-v1 QA: one JSONL file
(``test.jsonl``, ``data.jsonl`` or the folder's only ``*.jsonl``) whose rows are a page and, optionally, a
question about it (``{"query": "...", "image": "img/1.png"}`` or ``"pdf"`` + ``"page"``); each question's
one relevant page is its row's. Paths are relative to the dataset folder. Any problem is a `DatasetError`
naming the file and the reason in one line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Query fields that are never a subset: its id and text, and the v1 layout's page fields.
_NOT_SUBSETS = frozenset({"_id", "text", "query", "image", "pdf", "page", "image_filename", "answer", "split"})


class DatasetError(ValueError):
    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


@dataclass(frozen=True)
class CorpusRow:
    """One page of the corpus: an image file, or page ``page`` (1-based) of a PDF. ``path`` is absolute."""

    id: str
    path: Path
    page: int = 1
    kind: str = "image"  # "image" | "pdf"


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    fields: dict[str, str] = field(default_factory=dict)  # subset fields, e.g. {"type": "heading"}


@dataclass
class EvalDataset:
    root: Path
    corpus: list[CorpusRow]
    queries: list[Query]
    qrels: dict[str, dict[str, int]]
    layout: str = "beir"

    def subsets(self) -> dict[str, list[str]]:
        """``"field=value"`` -> the ids of the queries carrying it (``type=heading``, ``language=fr``)."""
        out: dict[str, list[str]] = {}
        for q in self.queries:
            for key, value in q.fields.items():
                out.setdefault(f"{key}={value}", []).append(q.id)
        return out


def load_dataset(path: str | Path, image_dir: Path | None = None) -> EvalDataset:
    """Read an evaluation set, whichever of the three layouts it is in (see the module docstring).

    ``image_dir``: where a saved HF dataset's page images are written as files (default: next to it).
    """
    root = Path(path).expanduser().absolute()
    if not root.is_dir():
        raise DatasetError(root, "not a folder (an evaluation set is a folder: corpus.jsonl, queries.jsonl, qrels.tsv)")
    if (root / "corpus.jsonl").is_file():
        return _load_beir(root)
    from .hf import is_hf_folder, load_hf_dataset

    if is_hf_folder(root):
        return load_hf_dataset(root, image_dir)
    v1 = _v1_file(root)
    if v1 is not None:
        return _load_v1(root, v1)
    raise DatasetError(root, "no corpus.jsonl (BEIR/ViDoRe-v2), test.jsonl (ViDoRe-v1) or saved HF dataset found")


# ---- BEIR / ViDoRe-v2 -----------------------------------------------------------------------------------------
def _load_beir(root: Path) -> EvalDataset:
    corpus = [_corpus_row(root, f, n, row) for f, n, row in _jsonl(root / "corpus.jsonl")]
    _unique(root / "corpus.jsonl", [r.id for r in corpus])
    queries = []
    for f, n, row in _jsonl(root / "queries.jsonl"):
        qid, text = _str(row, "_id", f, n), _str(row, "text", f, n)
        queries.append(Query(qid, text, _subset_fields(row)))
    _unique(root / "queries.jsonl", [q.id for q in queries])
    qrels_path = root / "qrels.tsv" if (root / "qrels.tsv").is_file() else root / "qrels" / "test.tsv"
    qrels = _read_qrels(qrels_path)
    _check_qrels(qrels_path, qrels, {q.id for q in queries}, {r.id for r in corpus})
    return EvalDataset(root, corpus, queries, qrels, "beir")


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise DatasetError(path, "missing (query-id, corpus-id, score per line, after a header)")
    qrels: dict[str, dict[str, int]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as f:
            for n, cols in enumerate(csv.reader(f, delimiter="\t"), 1):
                if not cols or not "".join(cols).strip():
                    continue
                if n == 1 and not _is_int(cols[-1]):
                    continue  # the header
                if len(cols) == 4:  # TREC's "qid 0 docid rel"
                    cols = [cols[0], cols[2], cols[3]]
                if len(cols) != 3 or not _is_int(cols[2]):
                    raise DatasetError(path, f"line {n}: expected query-id, corpus-id and an integer score")
                qrels.setdefault(cols[0].strip(), {})[cols[1].strip()] = int(cols[2])
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot read: {e}") from None
    return qrels


def _check_qrels(path: Path, qrels: dict, query_ids: set[str], corpus_ids: set[str]) -> None:
    for qid, rels in qrels.items():
        if qid not in query_ids:
            raise DatasetError(path, f"query id {qid!r} is not in queries.jsonl")
        missing = sorted(set(rels) - corpus_ids)
        if missing:
            raise DatasetError(path, f"corpus id {missing[0]!r} (query {qid!r}) is not in corpus.jsonl")


# ---- ViDoRe-v1 QA -------------------------------------------------------------------------------------------
def _v1_file(root: Path) -> Path | None:
    for name in ("test.jsonl", "data.jsonl"):
        if (root / name).is_file():
            return root / name
    files = sorted(root.glob("*.jsonl"))
    return files[0] if len(files) == 1 else None


def _load_v1(root: Path, path: Path) -> EvalDataset:
    corpus: dict[tuple[Path, int], CorpusRow] = {}
    queries, qrels = [], {}
    for f, n, row in _jsonl(path):
        key_row = {"_id": f"p{len(corpus) + 1}", **{k: row[k] for k in ("image", "pdf", "page") if k in row}}
        page = _corpus_row(root, f, n, key_row)
        page = corpus.setdefault((page.path, page.page), page)
        text = row.get("query")
        if isinstance(text, str) and text.strip():
            qid = str(row.get("_id") or f"q{len(queries) + 1}")
            queries.append(Query(qid, text, _subset_fields(row)))
            qrels[qid] = {page.id: 1}
    if not queries:
        raise DatasetError(path, "no row has a \"query\"")
    _unique(path, [q.id for q in queries])
    return EvalDataset(root, list(corpus.values()), queries, qrels, "vidore-v1")


# ---- shared ---------------------------------------------------------------------------------------------------
def _jsonl(path: Path) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    if not path.is_file():
        raise DatasetError(path, "missing")
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatasetError(path, f"line {n}: not JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise DatasetError(path, f"line {n}: expected a JSON object")
                yield path, n, row
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot read: {e}") from None


def _corpus_row(root: Path, f: Path, n: int, row: dict[str, Any]) -> CorpusRow:
    cid = _str(row, "_id", f, n)
    if "pdf" in row:
        pdf = root / _str(row, "pdf", f, n)
        page = row.get("page")
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise DatasetError(f, f"line {n}: \"page\" must be a page number starting at 1, got {page!r}")
        _exists(pdf, f, n)
        return CorpusRow(cid, pdf.resolve(), page, "pdf")
    if "image" in row:
        image = root / _str(row, "image", f, n)
        _exists(image, f, n)
        return CorpusRow(cid, image.resolve(), 1, "image")
    raise DatasetError(f, f"line {n}: a corpus row needs \"image\" or \"pdf\" and \"page\"")


def _exists(path: Path, f: Path, n: int) -> None:
    if not path.is_file():
        raise DatasetError(f, f"line {n}: {path} does not exist")


def _str(row: dict[str, Any], key: str, f: Path, n: int) -> str:
    value = row.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and key == "_id":
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f, f"line {n}: missing or empty \"{key}\"")
    return value


def _subset_fields(row: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in row.items() if k not in _NOT_SUBSETS and isinstance(v, str) and v}


def _unique(path: Path, ids: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise DatasetError(path, f"id {i!r} appears twice")
        seen.add(i)


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True

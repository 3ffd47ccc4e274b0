"""`eval build` on a real Debian PDF: hard queries (no long verbatim run of the page), a seeded disjoint split,
graded qrels; the query synthesis API that training reuses."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

from app.evaluation.build import build_eval_set, split_pages
from app.evaluation.dataset import load_dataset
from app.evaluation.queries import QUERY_TYPES, synthesize_queries


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _verbatim_run(query: str, page: str, n: int) -> bool:
    """Whether any n consecutive words of the query appear consecutively in the page (checked naively)."""
    q, p = _words(query), " " + " ".join(_words(page)) + " "
    return any(f" {' '.join(q[i:i + n])} " in p for i in range(len(q) - n + 1))


@pytest.fixture(scope="module")
def pdf_dir(tmp_path_factory, debian_pdfs) -> Path:
    d = tmp_path_factory.mktemp("pdfs")
    shutil.copy(debian_pdfs["auto-multiple-choice.en.pdf"], d / "amc.pdf")
    shutil.copy(debian_pdfs["sample-plain.pdf"], d / "sample.pdf")
    return d


@pytest.fixture(scope="module")
def built(tmp_path_factory, pdf_dir):
    out = tmp_path_factory.mktemp("set") / "amc-eval"
    report = build_eval_set([pdf_dir], out, queries_per_page=2, split=0.25, seed=7)
    return out, report


def _page_texts(pdf_dir: Path) -> dict[tuple[str, int], str]:
    import pymupdf

    texts = {}
    for pdf in pdf_dir.glob("*.pdf"):
        with pymupdf.open(pdf) as doc:
            for i, page in enumerate(doc, 1):
                texts[(pdf.name, i)] = page.get_text()
    return texts


def test_queries_are_not_verbatim(built, pdf_dir):
    out, report = built
    ds = load_dataset(out)
    texts = _page_texts(pdf_dir)
    rows = {r.id: r for r in ds.corpus}
    assert report.test_queries == len(ds.queries) > 30
    for q in ds.queries:
        source = next(cid for cid, g in ds.qrels[q.id].items() if g == 2)
        page = texts[(rows[source].path.name, rows[source].page)]
        assert not _verbatim_run(q.text, page, 9), (q.text, source)
        first_line = next(line for line in page.splitlines() if line.strip())
        assert q.text.lower() != first_line.strip().lower()
        assert len(_words(q.text)) >= 3
    assert {q.fields["type"] for q in ds.queries} <= set(QUERY_TYPES) and len(report.types) >= 2


def test_split_is_seeded_disjoint_and_matches_the_queries(built, pdf_dir, tmp_path):
    out, report = built
    split = json.loads((out / "split.json").read_text())
    test, train = set(split["test"]), set(split["train"])
    assert not test & train and len(test | train) == report.pages == 30 + 101
    assert len(test) == round(0.25 * report.pages) and split["seed"] == 7
    # Test queries' own page (grade 2) is a test page, train queries' a train page; all pages in both corpora.
    for folder, pages in ((out, test), (out / "train", train)):
        ds = load_dataset(folder)
        assert len(ds.corpus) == report.pages
        for q in ds.queries:
            assert {cid for cid, g in ds.qrels[q.id].items() if g == 2} <= pages
    # Same seed, same split and queries; another seed, another split.
    again = build_eval_set([pdf_dir], tmp_path / "again", queries_per_page=2, split=0.25, seed=7)
    assert json.loads((tmp_path / "again" / "split.json").read_text()) == split
    assert (tmp_path / "again" / "queries.jsonl").read_text() == (out / "queries.jsonl").read_text()
    assert again.as_dict() == report.as_dict()
    other = split_pages(sorted(test | train), 0.25, seed=8)
    assert set(other[0]) != test and not set(other[0]) & set(other[1])


def test_grades_source_page_and_pages_with_the_phrase(built):
    out, _ = built
    qrels = load_dataset(out).qrels
    assert all(sum(g == 2 for g in rels.values()) == 1 for rels in qrels.values())
    # sample.pdf repeats its questions across its 30 copies: some query has other pages graded 1.
    assert any(g == 1 for rels in qrels.values() for g in rels.values())


def test_synthesize_queries_api_is_deterministic():
    text = ("3.2 Installing the Scanner Driver\n"
            "The scanner driver is installed from the vendor archive before the first calibration run.\n"
            "Figure 4: Calibration sheet printed by the driver after installation\n"
            "Each calibration sheet carries eight markers that the software detects on the scanned image.\n")
    a = synthesize_queries(text, 3, random.Random(1))
    assert a == synthesize_queries(text, 3, random.Random(1))
    assert {t for _, t in a} == {"heading", "caption", "sentence"}
    assert all(isinstance(q, str) and not _verbatim_run(q, text, 7) for q, _ in a)


def test_bad_inputs(tmp_path, pdf_dir):
    (tmp_path / "notes.pdf").write_text("not a pdf at all")
    problems = []
    report = build_eval_set([tmp_path / "notes.pdf", pdf_dir / "amc.pdf"], tmp_path / "out",
                            on_problem=lambda p, r: problems.append((p, r)))
    assert report.pages == 101 and problems and "not a PDF" in problems[0][1]
    # sample.pdf is 30 copies of one exam: every line repeats, so no page yields a query.
    with pytest.raises(ValueError, match="no query could be made"):
        build_eval_set([pdf_dir / "sample.pdf"], tmp_path / "out1", split=1.0)
    with pytest.raises(ValueError, match="no PDF page"):
        build_eval_set([tmp_path / "notes.pdf"], tmp_path / "out2")
    with pytest.raises(ValueError, match="--split"):
        build_eval_set([pdf_dir], tmp_path / "out3", split=0)


def test_llm_question_writer_hook(tmp_path, debian_pdfs):
    # An LLM is a remote service that cannot run here: a stand-in QuestionWriter records what it is given.
    import pymupdf

    from app.evaluation.build import QuestionWriter

    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as doc:
        doc.select([9, 10, 11, 12])
        doc.save(tmp_path / "amc4.pdf")
    seen = []

    class Writer:
        def questions(self, page_text: str, image_path: Path, n: int) -> list[str]:
            from PIL import Image

            with Image.open(image_path) as im:
                seen.append((len(page_text), im.size, n))
            return [f"what does page with {len(page_text)} characters say?"] * 3

    assert isinstance(Writer(), QuestionWriter)
    build_eval_set([tmp_path / "amc4.pdf"], tmp_path / "llm", queries_per_page=1, split=1.0, writer=Writer())
    ds = load_dataset(tmp_path / "llm")
    assert len(seen) == 4 and all(n == 1 and w > 500 for _, (w, h), n in seen)
    assert {q.fields["type"] for q in ds.queries} == {"llm"} and len(ds.queries) == 4
    assert all(list(ds.qrels[q.id].values()) == [2] for q in ds.queries)  # no phrase: only its own page

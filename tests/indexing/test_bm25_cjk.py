"""CJK-aware BM25: overlapping bigrams for Chinese/Japanese/Korean runs, Qdrant's stemmer for the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf
import pytest

from indexing.bm25 import Bm25Encoder
from indexing.store import SCHEMA_FILE, EdgeStore, PagePoint, QdrantClientStore
from indexing.tokenize import cjk_bigrams, has_cjk, pretokenize

HASH = "ab" * 16


def test_cjk_runs_become_overlapping_bigrams_and_other_text_stays() -> None:
    assert cjk_bigrams("AMCの答案用紙").split() == ["AMC", "の答", "答案", "案用", "用紙"]
    assert cjk_bigrams("答案。問") .split() == ["答案", "。", "問"]  # punctuation ends a run; 1 char stays
    assert cjk_bigrams("Running files") == "Running files"
    assert cjk_bigrams("ﾌｧｲﾙ").split() == ["ファ", "ァイ", "イル"]  # half-width katakana folded (NFKC)
    assert cjk_bigrams("한국어 中文") .split() == ["한국", "국어", "中文"]
    assert has_cjk("x答") and not has_cjk("plain ascii")
    assert pretokenize("答案用紙", "none") == "答案用紙"
    with pytest.raises(ValueError, match="CJK"):
        pretokenize("x", "words")


def test_a_word_inside_a_longer_run_matches_only_with_bigrams() -> None:
    doc, query = "答案用紙を配布します", "答案"
    bigram, plain = Bm25Encoder("english", cjk="bigram"), Bm25Encoder("english", cjk="none")
    assert set(bigram.embed_query(query).indices) <= set(bigram.embed_document(doc).indices)
    assert not set(plain.embed_query(query).indices) & set(plain.embed_document(doc).indices)


@pytest.mark.parametrize("backend", ["edge", "client-memory"])
def test_mixed_english_japanese_page_matches_both_scripts(tmp_path: Path, backend: str) -> None:
    store = EdgeStore(tmp_path / "q") if backend == "edge" else QdrantClientStore(location=":memory:")
    with store:
        store.upsert([
            PagePoint(doc_hash=HASH, doc_path="/d/mixed.pdf", page=1,
                      text="The scanner reads the answer sheets. 答案用紙をスキャンします。"),
            PagePoint(doc_hash=HASH, doc_path="/d/mixed.pdf", page=2, text="Compile the LaTeX source with pdflatex."),
            PagePoint(doc_hash=HASH, doc_path="/d/mixed.pdf", page=3, text="試験問題を作成します。"),
        ])
        assert [h.page for h in store.query(text="答案", mode="text")] == [1]
        assert [h.page for h in store.query(text="scanning sheet", mode="text")] == [1]  # stemmed English
        assert [h.page for h in store.query(text="問題", mode="text")] == [3]


def test_cjk_mode_is_recorded_and_an_old_index_keeps_its_tokenisation(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "new") as s:
        assert s.cjk == "bigram"
    assert json.loads((tmp_path / "new" / SCHEMA_FILE).read_text())["bm25_cjk"] == "bigram"
    # An index written before bm25_cjk existed: its pages hold whole-run tokens, so its queries must too.
    with EdgeStore(tmp_path / "old") as s:
        pass
    schema_path = tmp_path / "old" / SCHEMA_FILE
    schema = json.loads(schema_path.read_text())
    del schema["bm25_cjk"]
    schema_path.write_text(json.dumps(schema))
    with EdgeStore(tmp_path / "old") as s:
        assert s.cjk == "none"
        s.upsert([PagePoint(doc_hash=HASH, doc_path="/d/a.pdf", page=1, text="答案用紙")])
        assert [h.page for h in s.query(text="答案用紙", mode="text")] == [1]
    assert json.loads(schema_path.read_text()).get("bm25_cjk", "none") == "none"


def test_japanese_debian_manual_words_inside_longer_runs(debian_pdfs: dict[str, Path], tmp_path: Path) -> None:
    """auto-multiple-choice.ja.pdf: the issue's words; before bigrams 2/43, 4/39 and 0/36 pages were found."""
    with pymupdf.open(debian_pdfs["auto-multiple-choice.ja.pdf"]) as doc:
        texts = [p.get_text() for p in doc]
    with EdgeStore(tmp_path / "q", language="japanese") as store:
        store.upsert([PagePoint(doc_hash=HASH, doc_path="/d/ja.pdf", page=i + 1, text=t) for i, t in enumerate(texts)])
        for word in ("試験問題", "ファイル", "答案"):
            containing = {i + 1 for i, t in enumerate(texts) if word in t}
            assert len(containing) >= 30, word
            found = {h.page for h in store.query(text=word, mode="text", top_k=len(texts))}
            assert containing <= found, (word, sorted(containing - found))
            top = [h.page for h in store.query(text=word, mode="text", top_k=len(containing))]
            assert sum(p in containing for p in top) >= 0.9 * len(containing), word


def test_indexer_creates_the_index_in_the_configured_language(debian_pdfs: dict[str, Path], tmp_path: Path) -> None:
    from indexing.pipeline import Indexer, IndexOptions

    src = tmp_path / "ja.pdf"
    with pymupdf.open(debian_pdfs["auto-multiple-choice.ja.pdf"]) as doc, pymupdf.open() as out:
        out.insert_pdf(doc, from_page=0, to_page=3)
        out.save(src)
    index = tmp_path / "idx"
    Indexer(index, options=IndexOptions(bm25_language="japanese")).sync([src])
    schema = json.loads((index / "qdrant" / SCHEMA_FILE).read_text())
    assert (schema["bm25_language"], schema["bm25_cjk"]) == ("japanese", "bigram")

"""Snippets: the passage around the query's matched terms, matched with BM25's own tokenisation (Qdrant's stemmer
and stop words, CJK bigrams), on made-up sentences and on real Debian manual pages."""

from __future__ import annotations

import pymupdf
import pytest

from indexing.bm25 import Bm25Encoder
from indexing.snippets import MARK, TermMatcher, make_snippet


def marked(snippet: str) -> list[str]:
    return snippet.split(MARK)[1::2]


def test_english_stems_match_and_stop_words_never_do() -> None:
    m = TermMatcher(Bm25Encoder("english"))
    s = m.snippet("Configuring the scanner. The scanned answer sheets are stored; the scans go to the teacher.",
                  "how to configure scanning of the sheet")
    assert marked(s.text) == ["Configuring", "scanned", "sheets", "scans"]  # configure/scanning/sheet, stemmed
    assert s.terms == ["configuring", "scanned", "sheets", "scans"]
    assert "**the**" not in s.text.lower() and "**of**" not in s.text  # stop words in the query match nothing


def test_french_stems_with_the_french_stemmer() -> None:
    m = TermMatcher(Bm25Encoder("french"))
    s = m.snippet("Le développement de LilyPond : les partitions sont écrites en texte.", "développer une partition")
    assert marked(s.text) == ["développement", "partitions"]


def test_japanese_bigrams_are_found_inside_longer_runs() -> None:
    m = TermMatcher(Bm25Encoder("japanese"))
    text = "AMCの答案用紙を作成します。試験問題の答案をスキャンして採点します。"
    s = m.snippet(text, "答案 採点")
    assert marked(s.text) == ["答案", "答案", "採点"]
    spans = m.match_terms(text, "答案用紙")  # three overlapping bigrams of one run become one span
    assert [text[sp.start : sp.end] for sp in spans][0] == "答案用紙"


def test_the_window_holding_the_most_distinct_terms_wins() -> None:
    filler = " ".join(["lorem ipsum dolor sit amet"] * 30)
    text = f"Axes are drawn first. {filler} To draw axes with labels, set the label font. {filler} The end."
    s = TermMatcher(Bm25Encoder()).snippet(text, "axis labels font", width=120)
    assert {t.lower() for t in marked(s.text)} >= {"labels", "font"}
    assert s.text.startswith("… ") and s.text.endswith(" …")  # cut on both sides, never mid-word
    assert "Axes are drawn first" not in s.text


def test_a_page_without_matched_terms_gets_its_opening_unmarked() -> None:
    s = TermMatcher(Bm25Encoder()).snippet("Chapter one.\n\nIt   was a quiet    morning in the lab.", "zebra")
    assert s.text == "Chapter one. It was a quiet morning in the lab." and s.terms == [] and MARK not in s.text
    assert make_snippet("   ", []).text == ""


@pytest.mark.parametrize("query", ["answer sheets", "scanning the copies", "LaTeX compilation"])
def test_real_manual_pages(debian_pdfs, query: str) -> None:
    m = TermMatcher(Bm25Encoder())
    wanted = set(Bm25Encoder().embed_query(query).indices)
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as doc:
        pages = [p.get_text() for p in doc][8:40]
    found = 0
    for text in pages:
        s = m.snippet(text, query)
        assert len(s.text) <= 320 and "\n" not in s.text
        for word in marked(s.text):  # everything marked carries one of the query's BM25 terms
            assert set(Bm25Encoder().embed_query(word).indices) & wanted, word
        found += bool(s.terms)
    assert found >= 3


def test_the_pages_own_asterisks_never_look_like_marks() -> None:
    s = TermMatcher(Bm25Encoder()).snippet("Use ** for powers: 2**10, and *emphasis* around words.", "powers")
    assert marked(s.text) == ["powers"] and s.text.count(MARK) == 2

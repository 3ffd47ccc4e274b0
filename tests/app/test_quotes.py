"""Quoted citations: finding a model's verbatim quote in a page's text layer (exact, across line-break hyphens,
ligatures, curly quotes, OCR noise), refusing quotes that are not there, and reading the quotes of an answer."""

from __future__ import annotations

import random
import unicodedata

import pytest

from app.answer import cited_numbers
from app.quotes import QuoteMatch, extract_quotes, find_quote


def spanned(text: str, m: QuoteMatch | None) -> str:
    assert m is not None
    return unicodedata.normalize("NFKC", text)[m.start : m.end]


PAGE = (
    "Rendering\n"
    "By default pages render at 144 dpi; the thumbnails are made at 36 dpi and\n"
    "kept next to the index. Settings come from the configu-\n"
    "   ration files in the project folder, then from the environment.\n"
    "The ﬁle “docrag.toml” is read first.  Its  values  win over the defaults."
)


def test_exact_quote_gives_its_span_in_the_nfkc_text():
    m = find_quote(PAGE, "pages render at 144 dpi")
    assert m == QuoteMatch(m.start, m.end, 1.0, True)
    assert spanned(PAGE, m) == "pages render at 144 dpi"


def test_quote_across_a_line_break_hyphen_covers_both_halves():
    m = find_quote(PAGE, "Settings come from the configuration files")
    assert m is not None and m.exact
    assert spanned(PAGE, m) == "Settings come from the configu-\n   ration files"
    assert spanned(PAGE, find_quote(PAGE, "configuration files")).startswith("configu-")


def test_ligature_curly_quotes_case_and_spacing_do_not_matter():
    m = find_quote(PAGE, 'the file "docrag.toml" is read first')
    assert m is not None and m.exact
    # offsets are into the NFKC text, where the ligature is two letters: the span starts at "The", ends at "first"
    assert spanned(PAGE, m) == "The file “docrag.toml” is read first"
    assert PAGE[m.start : m.end] != spanned(PAGE, m)  # the raw text is one character shorter before it
    m = find_quote(PAGE, "ITS VALUES WIN\n over the defaults.")
    assert spanned(PAGE, m) == "Its  values  win over the defaults"  # no trailing full stop: ends at the last word
    m = find_quote(PAGE, "made at 36 dpi and kept next to the index")
    assert spanned(PAGE, m) == "made at 36 dpi and\nkept next to the index"


def test_casefold_expansion_maps_back_to_the_original_character():
    text = "Die Straße 12 führt zum Bahnhof."
    m = find_quote(text, "Strasse 12 führt zum")
    assert m is not None and m.exact and spanned(text, m) == "Straße 12 führt zum"


def test_cjk_text_without_spaces():
    page = "ページは既定で144dpiで描画されます。サムネイルは36dpiで作られ、索引の隣に置かれます。"
    assert spanned(page, find_quote(page, "既定で144dpiで描画されます")) == "既定で144dpiで描画されます"
    m = find_quote(page, "サムネイルは36dpiで作られ、索引の横に置かれます")  # one character off in 25
    assert spanned(page, m) == "サムネイルは36dpiで作られ、索引の隣に置かれます" and 0.9 < m.score < 1
    assert find_quote(page, "既定で145dpiで描画されます") is None
    assert find_quote(page, "索引の横") is None  # short: exact only


OCR_TRUE = (
    "The renderer stores every page image at 144 dpi in the cache folder, and the thumbnails at 36 dpi next to it"
)
# four single-character OCR errors: "l" for "1", a "c" dropped, "o" for "a", "I" for "l"
OCR_PAGE_PASSAGE = (
    "The renderer stores every page image at l44 dpi in the ache folder, and the thumbnails at 36 dpi next to it"
    .replace("image", "imoge")
    .replace("thumbnails", "thumbnaiIs")
)


def test_ocr_noise_is_found_with_a_span_close_to_the_true_one():
    page = "Page caching.\nAll rendering goes through one cache. " + OCR_PAGE_PASSAGE + ". It is cleared on reindex."
    quote = OCR_TRUE
    assert len(quote) >= 100
    m = find_quote(page, quote)
    assert m is not None and not m.exact
    assert 0.85 <= m.score < 1.0
    assert m.score == pytest.approx(1 - 4 / len(quote.lower().replace(",", "")), abs=1e-6)  # the comma is no letter
    true_start = page.index(OCR_PAGE_PASSAGE)
    assert abs(m.start - true_start) <= 3
    assert abs(m.end - (true_start + len(OCR_PAGE_PASSAGE))) <= 3


def test_rn_for_m_costs_two_edits_and_is_still_found():
    page = "The worker rnodel keeps the number of processes at two and restarts a worker after every crash."
    m = find_quote(page, "The worker model keeps the number of processes at two")
    assert m is not None and spanned(page, m) == "The worker rnodel keeps the number of processes at two"
    assert m.score == pytest.approx(1 - 2 / len("the worker model keeps the number of processes at two"))


def test_fuzzy_span_is_widened_to_whole_words():
    page = "Startup.\nThe configuration files are read at startup, before the index is opened."
    m = find_quote(page, "onfiguration files are read at startup")  # the model dropped a letter of the first word
    assert spanned(page, m) == "configuration files are read at startup"
    m = find_quote(page, "configuration files are read at start")  # ... or stopped short of the last one
    assert spanned(page, m) == "configuration files are read at startup"


def test_min_score_is_the_acceptance_threshold():
    page = "The renderer stores every page image at 144 dpi in the cache folder."
    quote = "The renderer stoers evrey page imgae at 144 dpi"  # 6 edits in 47 characters: 0.87
    assert find_quote(page, quote) is not None
    assert find_quote(page, quote, min_score=0.95) is None


def test_invented_quotes_give_none():
    # the page's own words in a new order, and a sentence that is not there at all
    assert find_quote(PAGE, "the defaults win over the configuration files in the project") is None
    assert find_quote(PAGE, "the index is read first and pages render from the environment") is None
    assert find_quote(PAGE, "Qdrant stores sparse vectors on disk in a separate collection") is None


def test_a_changed_number_or_word_is_not_a_match_even_when_characters_are_close():
    # one digit off in a long quote scores 0.98 on characters alone: the number must be on the page
    assert find_quote(PAGE, "By default pages render at 114 dpi; the thumbnails are made at 36 dpi") is None
    assert find_quote(PAGE, "By default pages render at 1440 dpi; the thumbnails are made at 36 dpi") is None
    # but OCR's "l" for "1" in a number is forgiven
    noisy = PAGE.replace("144 dpi", "l44 dpi")
    assert find_quote(noisy, "By default pages render at 144 dpi; the thumbnails are made at 36 dpi") is not None


def test_a_wrong_short_word_is_a_slip_but_a_wrong_content_word_is_not():
    page = "The worker gives up after 382 retries. A thumbnail stores page images in the cache folder."
    m = find_quote(page, "A thumbnail stores page images at the cache folder")  # "at" for "in"
    assert spanned(page, m) == "A thumbnail stores page images in the cache folder"
    assert find_quote(page, "A thumbnail caches page images in the cache folder") is None  # 0.9 on characters


def test_short_quotes_must_match_exactly_on_word_boundaries():
    assert spanned(PAGE, find_quote(PAGE, "144 dpi")) == "144 dpi"
    assert find_quote(PAGE, "144 dpl") is None  # one edit: close, but short
    assert find_quote(PAGE, "at 145 dpi") is None  # 3 words but 10 characters
    assert find_quote(PAGE, "pages rendr") is None  # 11 characters, 2 words
    assert find_quote(PAGE, "index") is not None
    assert find_quote(PAGE, "dex") is None  # inside "index", not a word of the page
    assert find_quote(PAGE, "") is None and find_quote("", "pages render at 144 dpi") is None
    assert find_quote(PAGE, ' "" ') is None


def test_repeated_quote_gives_the_first_occurrence():
    text = "Intro. The cache is cleared on reindex. Middle part. The cache is cleared on reindex. End."
    m = find_quote(text, "the cache is cleared on reindex")
    assert m is not None and m.start == text.index("The cache")
    fuzzy = find_quote(text, "the cache is claered on reindex")
    assert fuzzy is not None and fuzzy.start == text.index("The cache") and not fuzzy.exact
    # a quote part of a word inside: the first occurrence between words wins
    text = "The lockfile is kept. The lock file is kept."
    m = find_quote(text, "lock")
    assert m is not None and m.start == text.index("The lock file") + 4 and spanned(text, m) == "lock"


def make_page(seed: int, size: int = 4000) -> str:
    rng = random.Random(seed)
    subjects = ["The renderer", "Each worker", "The OCR engine", "A thumbnail", "The index", "The manifest"]
    verbs = ["stores", "reads", "writes", "skips", "caches", "renders", "scores", "checks"]
    objects = ["page images", "text layers", "document hashes", "sparse vectors", "the lock file", "OCR results"]
    tails = ["at {} dpi", "every {} seconds", "in batches of {}", "for up to {} pages", "after {} retries"]
    sentences: list[str] = []
    while sum(len(s) + 1 for s in sentences) < size:
        tail = rng.choice(tails).format(rng.randint(2, 999))
        sentences.append(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {tail}.")
        if rng.random() < 0.2:
            sentences[-1] += "\n"
    return " ".join(sentences)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_real_size_page_fuzzy_quote(seed: int):
    page = make_page(seed)
    assert len(page) >= 4000
    rng = random.Random(seed)
    start = page.index(" ", rng.randint(1000, 3000)) + 1
    end = page.index(" ", start + 150)
    passage = page[start:end]
    quote = list(" ".join(passage.split()))
    letters = [k for k, c in enumerate(quote) if c.isalpha()]
    for k in rng.sample(letters, 4):  # four letters the model got wrong, no digit
        quote[k] = "q" if quote[k] != "q" else "z"
    m = find_quote(page, "".join(quote))
    assert m is not None and not m.exact and m.score >= 0.95
    assert abs(m.start - start) <= 3 and abs(m.end - end) <= 3
    # the page's own vocabulary, recombined: never pinned anywhere
    for _ in range(20):
        words = passage.split()
        rng.shuffle(words)
        assert find_quote(page, " ".join(words)) is None


ANSWER = """Pages render at 144 dpi [2] "pages render at 144 dpi by default", and thumbnails at 36 dpi [2][3]: “made at
36 dpi”. Settings come from the files [1, 4] - « ration files in the project » and the environment [5].
See also [6] which says nothing quoted, and [7]“no space before it”. A quote elsewhere "not a citation" [8] x "no"."""


def test_extract_quotes_reads_every_form():
    assert extract_quotes(ANSWER) == [
        (2, "pages render at 144 dpi by default"),
        (2, "made at 36 dpi"),  # across the line break
        (3, "made at 36 dpi"),
        (1, "ration files in the project"),
        (4, "ration files in the project"),
        (7, "no space before it"),
    ]


def test_extract_quotes_one_line_curly_and_grouped_citations():
    answer = "Yes [2][3] “made at 36 dpi”. Also [10, 11]: \"kept next to the index\"; and [12] — «the defaults»."
    assert extract_quotes(answer) == [
        (2, "made at 36 dpi"),
        (3, "made at 36 dpi"),
        (10, "kept next to the index"),
        (11, "kept next to the index"),
        (12, "the defaults"),
    ]
    numbers = {n for n, _ in extract_quotes(answer)}
    assert numbers <= set(cited_numbers(answer))  # the same citation format as app.answer
    assert extract_quotes("No citation here, only \"a quote\". [1234] \"too long a number\" [a] \"x\"") == []
    assert extract_quotes("") == []

"""CJK-aware pre-tokenisation for BM25: Chinese, Japanese and Korean runs become overlapping character bigrams.

Qdrant's word tokenizer splits on spaces and punctuation, which CJK writing does not use between words, so a
whole run of Japanese ("試験問題を作成します") would be one token and a query for a word inside it ("問題")
would never match. Bigrams over every CJK run, on both the document and the query side, make any word of two
or more characters found inside a longer run match (the standard trick of Lucene's CJKBigramFilter); a
one-character run stays a unigram.

Other scripts are left as they are: the result is a string that Qdrant's own `Bm25` (stemming, stop words)
then tokenises, so Latin words on a mixed English/Japanese page keep their stemming and the BM25 length
normalisation counts both kinds of tokens alike.
"""

from __future__ import annotations

import re
import unicodedata

# Schema values of `bm25_cjk`: how an index tokenises CJK text. "none" is what indexes built before this
# module did (a CJK run is one token); queries must use the same as the documents did.
CJK_BIGRAM = "bigram"
CJK_NONE = "none"
CJK_MODES = (CJK_BIGRAM, CJK_NONE)
DEFAULT_CJK = CJK_BIGRAM

# Letters of the CJK scripts. Not included: CJK punctuation (、。「」・), which separates runs like a space.
_CJK_CHARS = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u3005-\u3007"  # 々 〆 〇
    "\u3041-\u309f"  # Hiragana
    "\u30a0-\u30fa\u30fc-\u30ff"  # Katakana (without the middle dot ・ U+30FB)
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
CJK_RUN = re.compile(f"[{_CJK_CHARS}]+")


def has_cjk(text: str) -> bool:
    """Whether `text` contains any CJK letter."""
    return CJK_RUN.search(text) is not None


def _bigrams(run: str) -> str:
    if len(run) == 1:
        return run
    return " ".join(run[i : i + 2] for i in range(len(run) - 1))


def cjk_bigrams(text: str) -> str:
    """`text` with every CJK run replaced by its overlapping bigrams, space-separated; other text unchanged.

    NFKC first, so half-width katakana and full-width Latin letters match their usual forms.
    "AMCの答案用紙" -> "AMC の答 答案 案用 用紙 ".
    """
    text = unicodedata.normalize("NFKC", text)
    if not has_cjk(text):
        return text
    return CJK_RUN.sub(lambda m: f" {_bigrams(m.group())} ", text)


def pretokenize(text: str, cjk: str = DEFAULT_CJK) -> str:
    """The text handed to Qdrant's BM25 tokenizer for this index's CJK mode."""
    if cjk == CJK_BIGRAM:
        return cjk_bigrams(text)
    if cjk == CJK_NONE:
        return text
    raise ValueError(f"unknown CJK tokenisation {cjk!r}: choose one of {', '.join(CJK_MODES)}")

"""What highlights and quoted citations cost (issue #20): per hit, per citation, and per page on disk.

    python benchmarks/highlights.py                  # the Debian manuals in .test-data/debian
    python benchmarks/highlights.py --queries 200

Indexes the Debian PDFs text-only, then:
- ``index``: pages/s with word boxes (what the words cost at index time is inside this number; the aligning and
  encoding alone is timed per page too, ``words_ms``);
- ``bytes``: word-box bytes per page (encoded rows, and ``words.sqlite`` on disk);
- ``highlight``: the time `annotate_hits` adds to a search per hit (matching the terms, reading the page's
  words, mapping spans to boxes), p50/p95 over queries made of words drawn from the pages;
- ``quote``: `find_quote` per citation, for a verbatim quote, a quote with OCR-like errors and an invented one.
Prints a table and writes benchmarks/results/highlights.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import unicodedata
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import device_name, print_table, write_json  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pdfs", default=str(Path(__file__).resolve().parents[1] / ".test-data" / "debian"))
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()

    from app import DocRag
    from app.highlights import annotate_hits
    from app.quotes import find_quote
    from indexing.render import make_renderer
    from indexing.snippets import TermMatcher
    from indexing.words import WORDS_NAME, WordStore, align

    rng = random.Random(0)
    pdfs = sorted(p for p in Path(args.pdfs).iterdir() if p.name.endswith((".pdf", ".pdf.gz")))
    with tempfile.TemporaryDirectory() as tmp:
        idx = Path(tmp) / "index"
        rag = DocRag(index_dir=idx, encoder="none", text_encoder="none")
        t = time.perf_counter()
        report = rag.index(pdfs)
        index_s = time.perf_counter() - t
        with WordStore(idx) as words:
            rows = words._db.execute("SELECT length(data) FROM words").fetchall()
        pages = len(rows)
        disk = (idx / WORDS_NAME).stat().st_size

        renderer = make_renderer("pymupdf")
        align_ms, texts = [], []
        with renderer.open(pdfs[0]) as doc:
            for page in doc.render_small(range(1, 41)):
                t = time.perf_counter()
                align(page.text, page.words).encode()
                align_ms.append((time.perf_counter() - t) * 1000)
                if len(page.text) > 500:
                    texts.append(page.text)

        vocab = sorted({w for tx in texts for w in tx.split() if w.isalpha() and len(w) > 4})
        per_hit = []
        with rag._store("benchmark") as store:
            matcher = TermMatcher(store.bm25)
        for _ in range(args.queries):
            query = " ".join(rng.sample(vocab, 2))
            hits = rag.search(query, top_k=5, mode="text")
            if not hits:
                continue
            t = time.perf_counter()
            annotate_hits(hits, query, matcher, idx)
            per_hit.append((time.perf_counter() - t) * 1000 / len(hits))

        quote_ms: dict[str, list[float]] = {"verbatim": [], "ocr_noise": [], "invented": []}
        for text in texts:
            norm = " ".join(unicodedata.normalize("NFKC", text).split())
            words_ = norm.split()
            if len(words_) < 40:
                continue
            start = rng.randrange(0, len(words_) - 25)
            quote = " ".join(words_[start : start + 20])
            noisy = list(quote)
            for i in rng.sample(range(len(noisy)), 3):
                noisy[i] = "x"
            invented = " ".join(rng.sample(words_, 20))
            for kind, q in (("verbatim", quote), ("ocr_noise", "".join(noisy)), ("invented", invented)):
                t = time.perf_counter()
                find_quote(text, q)
                quote_ms[kind].append((time.perf_counter() - t) * 1000)

    rows_out = [
        {"what": "index (text only, with word boxes)", "p50_ms": None, "p95_ms": None,
         "value": round(report.pages / index_s, 1), "unit": "pages/s"},
        {"what": "words: align + encode a page", "p50_ms": round(_pct(align_ms, .5), 3),
         "p95_ms": round(_pct(align_ms, .95), 3), "value": None, "unit": ""},
        {"what": "word boxes, encoded", "p50_ms": None, "p95_ms": None,
         "value": round(sum(r[0] for r in rows) / max(pages, 1)), "unit": "bytes/page"},
        {"what": "words.sqlite on disk", "p50_ms": None, "p95_ms": None, "value": round(disk / max(pages, 1)),
         "unit": "bytes/page"},
        {"what": "highlights per hit", "p50_ms": round(_pct(per_hit, .5), 3), "p95_ms": round(_pct(per_hit, .95), 3),
         "value": len(per_hit), "unit": "queries"},
        *({"what": f"quote per citation ({k})", "p50_ms": round(_pct(v, .5), 3), "p95_ms": round(_pct(v, .95), 3),
           "value": len(v), "unit": "quotes"} for k, v in quote_ms.items()),
    ]
    print_table(rows_out, ["what", "p50_ms", "p95_ms", "value", "unit"])
    write_json("highlights", {"device": device_name(cpu=True), "when": time.strftime("%Y-%m-%d"),
                              "versions": {"pymupdf": version("pymupdf"), "qdrant-edge-py": version("qdrant-edge-py")},
                              "pages": pages, "rows": rows_out})


if __name__ == "__main__":
    main()

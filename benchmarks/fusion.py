"""Fusion settings for hybrid search: RRF k and per-source weights, chosen on a tuning half, scored on a held-out half.

Born-digital pages of real manuals are indexed once with every source given (BM25 always; `--text-encoder` adds
the dense text vector, `--encoder` the visual one). Known-item phrase queries (benchmarks/known_item.py) are
split in two alternating halves. Every single source and a grid of fusion settings (Qdrant's weighted RRF, in
one query) are scored by nDCG@5; the best setting on the tuning half is reported with its held-out score, next
to the defaults (k=60, all weights 1) and the best single source.

    python benchmarks/fusion.py --text-encoder /models/all-MiniLM-L6-v2 --encoder /models/moca-3b   # real models
    python benchmarks/fusion.py --tiny-text-encoder --json /tmp/fusion-smoke.json   # CPU check, random model

(`docrag eval`, built concurrently in app/evaluation/, was not in this tree: known_item.py stands in for it.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, device_name, print_table, write_json  # noqa: E402
from benchmarks.known_item import build_queries, mean_ndcg, page_texts, split  # noqa: E402
from benchmarks.ocr import excerpt  # noqa: E402

KS = (2, 10, 30, 60, 100)
WEIGHTS = (0.5, 1.0, 2.0, 4.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", nargs="*", default=["auto-multiple-choice.en.pdf", "reference.pdf.gz",
                                                  "automultiplechoice.pdf"])
    ap.add_argument("--pages", type=int, default=60, help="pages per manual")
    ap.add_argument("--text-encoder", default=None, help="sentence-transformers folder or hub id")
    ap.add_argument("--tiny-text-encoder", action="store_true", help="build a tiny random one (CPU check)")
    ap.add_argument("--encoder", default=None, help="MoCa checkpoint for the visual vector")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from indexing.pipeline import Indexer
    from indexing.store import open_store

    work = Path(tempfile.mkdtemp(prefix="docrag-fusion-"))
    docs = [excerpt(ROOT / ".test-data" / "debian" / d, work / "docs", args.pages, None) for d in args.docs]
    queries = build_queries(page_texts(docs))
    tune, held = split(queries)
    text_enc = visual_enc = None
    if args.tiny_text_encoder:
        from app.textenc import init_tiny_text_encoder

        args.text_encoder = str(init_tiny_text_encoder(work / "tiny-st", [t for _, _, t in page_texts(docs)]))
    if args.text_encoder:
        from app.textenc import SentenceTextEncoder

        text_enc = SentenceTextEncoder(args.text_encoder)
    if args.encoder:
        from moca_train.modeling import MoCaEncoder

        visual_enc = MoCaEncoder.from_pretrained(args.encoder)
    Indexer(work / "idx", visual_enc, text_embedder=text_enc).sync([work / "docs"])

    qvec = {q.text: (visual_enc.encode_queries([q.text])[0] if visual_enc else None,
                     text_enc.encode_queries([q.text])[0] if text_enc else None) for q in queries}
    sources = ["text"] + (["dense"] if text_enc else []) + (["visual"] if visual_enc else [])
    rows = []
    with open_store(work / "idx", None) as store:
        def scorer(mode: str, **kw):
            def search(q: str) -> list[tuple[str, int]]:
                vec, tvec = qvec[q]
                hits = store.query(text=q, vector=vec, text_vector=tvec, mode=mode, top_k=5, **kw)
                return [(Path(h.doc_path).name, h.page) for h in hits]
            return search

        for name, mode in (("text", "text"), ("dense", "dense"), ("visual", "visual")):
            if name in sources:
                rows.append({"setting": f"{name} only", "tune": mean_ndcg(tune, scorer(mode)),
                             "held_out": mean_ndcg(held, scorer(mode))})
        if len(sources) > 1:
            rows.append({"setting": "hybrid k=60, weights 1", "tune": mean_ndcg(tune, scorer("hybrid")),
                         "held_out": mean_ndcg(held, scorer("hybrid"))})
            best = None
            for k in KS:
                for ws in itertools.product(WEIGHTS, repeat=len(sources) - 1):  # text fixed at 1: only ratios matter
                    weights = dict(zip(sources, (1.0, *ws), strict=True))
                    score = mean_ndcg(tune, scorer("hybrid", rrf_k=k, weights=weights))
                    if best is None or score > best[0] + 1e-9:
                        best = (score, k, weights)
            score, k, weights = best
            rows.append({"setting": f"hybrid tuned k={k}, weights {weights}", "tune": score,
                         "held_out": mean_ndcg(held, scorer("hybrid", rrf_k=k, weights=weights))})
    for r in rows:
        r["tune"], r["held_out"] = round(r["tune"], 4), round(r["held_out"], 4)
    print_table(rows, ["setting", "tune", "held_out"])
    load = [round(x, 2) for x in os.getloadavg()]  # other jobs on a shared machine slow OCR down
    payload = {"device": device_name(), "load_average": load,
               "docs": args.docs, "pages_per_doc": args.pages, "queries": len(queries),
               "text_encoder": args.text_encoder, "encoder": args.encoder, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    else:
        write_json("fusion", payload)


if __name__ == "__main__":
    main()

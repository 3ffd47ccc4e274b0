"""Search latency in a long-running process (the web UI, a LangChain retriever) at 10k pages, with the store
kept open (`DocRag(keep_open=True)`, `indexing.store.shared.SharedStore`), beside what a search costs when
the store is opened per call (in-process, and a whole `docrag search` CLI process); and the time to the
first answer token with the OpenAI-compatible backend against the local test server (tests/app/
openai_double.py), which measures docrag's own overhead (search + prompt + page images + HTTP/SSE).

    python benchmarks/ui_search.py                 # 10,000 pages, dim 2048 (MoCa-3B), 200 queries per mode
    python benchmarks/ui_search.py --n 2000 --queries 50 --json /tmp/ui-quick.json

The index is synthetic (Zipf-distributed page texts, random unit vectors) so that 10k pages build in
seconds; the query encoder is a stub returning a random unit vector (the encoder's own cost is in
benchmarks/encode.py). Prints a table and writes benchmarks/results/ui_search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "app"))  # the LLM test server

from app import DocRag, load_config  # noqa: E402
from indexing.manifest import Manifest  # noqa: E402
from indexing.store import EdgeStore, PagePoint, utc_now  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ui_search.json"
ENCODER = "bench-stub-encoder"


class StubEncoder:
    """A query encoder with no cost of its own: the benchmark is about the store and the service."""

    name = ENCODER

    def __init__(self, dim: int, seed: int = 1) -> None:
        self.dim, self.rng = dim, np.random.default_rng(seed)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        v = self.rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def build_index(index_dir: Path, n: int, dim: int, seed: int = 0) -> list[str]:
    """n synthetic pages (10 per document) in an Edge store plus a matching manifest; returns query words."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(20_000)]
    ranks = np.arange(1, len(vocab) + 1)
    zipf = (1 / ranks) / (1 / ranks).sum()
    now = utc_now()
    store = EdgeStore(index_dir / "qdrant", dim)
    for b in range(0, n, 1000):
        pts = []
        for i in range(b, min(n, b + 1000)):
            v = rng.standard_normal(dim).astype(np.float32)
            text = " ".join(vocab[j] for j in rng.choice(len(vocab), size=250, p=zipf))
            pts.append(PagePoint(doc_hash=f"d{i // 10}", doc_path=f"/corpus/doc{i // 10}.pdf", page=i % 10 + 1,
                                 image_path=f"pages/d{i // 10}/{i % 10 + 1:05d}.webp", text=text,
                                 title=f"Document {i // 10}", indexed_at=now, visual=v / np.linalg.norm(v)))
        store.upsert(pts)
    store.optimize()
    store.close()
    with Manifest(index_dir) as m:
        for d in range((n + 9) // 10):
            path = f"/corpus/doc{d}.pdf"
            m.start(path, f"d{d}", 1000, 0, f"Document {d}", None)
            m.complete(path, 10, 10, now)
        m.set_meta("encoder", ENCODER)
    return vocab[50:2050]  # mid-frequency words: queries that match a realistic number of pages


def pcts(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "mean_ms": float(a.mean()), "n": len(xs)}


def time_searches(rag: DocRag, words: list[str], mode: str, n: int) -> dict[str, float]:
    rng = np.random.default_rng(7)
    for _ in range(5):  # warm-up (first open, BM25 model, caches)
        rag.search(" ".join(rng.choice(words, 3)), top_k=5, mode=mode)
    times = []
    for _ in range(n):
        q = " ".join(rng.choice(words, 3))
        t0 = time.perf_counter()
        rag.search(q, top_k=5, mode=mode)
        times.append(time.perf_counter() - t0)
    return pcts(times)


def cli_search(index_dir: Path, words: list[str], n: int) -> dict[str, float]:
    times = []
    env = {**os.environ, "DOCRAG_ENCODER": "none"}
    for i in range(n):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "app.cli", "search", f"{words[i]} {words[i + 1]}", "--index-dir",
                            str(index_dir), "--mode", "text", "--json"], cwd=ROOT, capture_output=True, env=env)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"docrag search failed: {r.stderr.decode()[-500:]}")
    return pcts(times)


def first_token(workdir: Path, n: int) -> dict[str, Any]:
    """Time from `ask()` to the first streamed chunk, the local server answering at once (3 real pages)."""
    from openai_double import OpenAIDouble

    from app.llm.openai import _encoded

    idx = workdir / "ttft"
    DocRag(index_dir=idx, encoder="none").index([ROOT / "examples"])
    with OpenAIDouble(lambda body: ["The", " answer [1]."]) as srv:
        rag = DocRag(index_dir=idx, encoder="none", llm_base_url=srv.base_url, llm_model="m", keep_open=True)
        firsts: dict[str, list[float]] = {"cold": [], "warm": []}
        searches = []
        for i in range(2 * n + 2):
            kind = "cold" if i % 2 else "warm"  # cold: page images not yet encoded (a new question's pages)
            if kind == "cold":
                _encoded.cache_clear()
            t0 = time.perf_counter()
            rag.search("inverter revenue visitors", top_k=3, mode="text")
            t1 = time.perf_counter()
            stream = iter(rag.ask("inverter revenue visitors", top_k=3, mode="text"))
            next(stream)
            t2 = time.perf_counter()
            list(stream)
            if i >= 2:
                searches.append(t1 - t0)
                firsts[kind].append(t2 - t1)
        rag.close()
        image_bytes = sum(len(p["image_url"]["url"]) for p in srv.requests[-1]["messages"][1]["content"]
                          if p["type"] == "image_url")
    return {"time_to_first_token_cold": pcts(firsts["cold"]), "time_to_first_token_warm": pcts(firsts["warm"]),
            "search_alone": pcts(searches), "pages": 3,
            "image_max_side": load_config().llm_image_max_side, "data_url_bytes": image_bytes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--cli-calls", type=int, default=5)
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()
    import torch

    work = Path(tempfile.mkdtemp(prefix="docrag-ui-bench-"))
    try:
        idx = work / "idx"
        t0 = time.perf_counter()
        words = build_index(idx, args.n, args.dim)
        build_s = time.perf_counter() - t0
        config = load_config({"index_dir": idx})
        rows = []
        for mode in ("text", "hybrid"):
            kept = DocRag(config, encoder=StubEncoder(args.dim), keep_open=True)
            r = time_searches(kept, words, mode, args.queries)
            rows.append({"process": "UI (store kept open)", "mode": mode, **r, "opens": kept._shared.opens})
            kept.close()
            per_call = DocRag(config, encoder=StubEncoder(args.dim))
            r = time_searches(per_call, words, mode, max(20, args.queries // 4))
            rows.append({"process": "in-process, open per call", "mode": mode, **r})
        rows.append({"process": "CLI `docrag search` (whole process)", "mode": "text",
                     **cli_search(idx, words, args.cli_calls)})
        ttft = first_token(work, max(5, args.queries // 20))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nsearch latency at {args.n} pages (dim {args.dim}), top-k 5:")
    print(f"{'process':40} {'mode':7} {'p50 ms':>8} {'p95 ms':>8} {'n':>5}")
    for r in rows:
        print(f"{r['process']:40} {r['mode']:7} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['n']:5d}")
    print(f"\ntime to first answer token (3 pages at 144 dpi, local test server; "
          f"search alone p50 {ttft['search_alone']['p50_ms']:.1f} ms):")
    for kind in ("cold", "warm"):
        t = ttft[f"time_to_first_token_{kind}"]
        print(f"  {kind} page-image cache: p50 {t['p50_ms']:.1f} ms, p95 {t['p95_ms']:.1f} ms")
    load = os.getloadavg()
    payload = {
        "benchmark": "ui_search", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                  f"{torch.get_num_threads()} torch threads)",
        "load_avg_1m_at_end": round(load[0], 2),
        "command": "python benchmarks/ui_search.py " + " ".join(sys.argv[1:]),
        "n_pages": args.n, "dim": args.dim, "top_k": 5, "index_build_s": round(build_s, 2),
        "encoder": "stub (random unit vector, no cost)",
        "search": rows, "answer": ttft,
        "notes": "UI = DocRag(keep_open=True): the shard stays open under the index lock between queries. "
                 "'open per call' = the lock + shard open/close each search (what every CLI call pays). "
                 "The CLI row adds Python start-up and imports.",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

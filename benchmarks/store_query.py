"""Edge store at index scale: upsert throughput, open/close cost, optimize time, query latency per mode.

Why: the process model (`indexing.lock`) opens the shard per batch / per search, so the open cost has to be
known at a realistic size; and the search modes' latencies decide what the UI can afford.

    python benchmarks/store_query.py        # 10,000 pages: dim 2048 (MoCa-3B) exact and HNSW, dim 64 exact
    python benchmarks/store_query.py --n 20000 --configs 2048:exact --queries 300

Prints a table and writes benchmarks/results/store_query.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexing.store import EdgeStore, PagePoint, utc_now  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "store_query.json"


def make_vocab(rng: np.random.Generator, size: int = 20000) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(size)]


def page_text(rng: np.random.Generator, vocab: list[str], zipf_p: np.ndarray, words: int = 250) -> str:
    """Zipf-distributed words: a few very common terms, a long tail of rare ones, like real page text."""
    return " ".join(vocab[i] for i in rng.choice(len(vocab), size=words, p=zipf_p))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def timed(fn: Any, *a: Any, **k: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return time.perf_counter() - t0, out


def open_close(path: Path, repeats: int = 5) -> dict[str, float]:
    opens, closes = [], []
    for _ in range(repeats):
        t_open, s = timed(EdgeStore, path)
        t_close, _ = timed(s.close)
        opens.append(t_open)
        closes.append(t_close)
    return {
        "open_s_median": statistics.median(opens),
        "open_s_max": max(opens),
        "close_s_median": statistics.median(closes),
    }


def bench_queries(
    s: EdgeStore, rng: np.random.Generator, vectors: np.ndarray, texts: list[str], n_queries: int, top_k: int
) -> dict[str, Any]:
    """Latency per mode; visual recall@k against brute force is computed after the timed loop (numpy's
    BLAS threads spinning between queries would otherwise slow the engine down on a small machine)."""
    out: dict[str, Any] = {}
    idx = rng.integers(0, len(texts), n_queries)
    qtexts = [" ".join(rng.choice(texts[i].split(), 3)) for i in idx]
    noise = rng.standard_normal((n_queries, vectors.shape[1])).astype(np.float32)
    qvecs = vectors[idx] + 0.3 * noise / np.sqrt(vectors.shape[1])
    for mode in ("text", "visual", "hybrid"):
        s.query(text=qtexts[0], vector=qvecs[0], mode=mode, top_k=top_k)  # warm-up
        lat: list[float] = []
        hits_all = []
        for j in range(n_queries):
            dt, hits = timed(s.query, text=qtexts[j], vector=qvecs[j], mode=mode, top_k=top_k)
            lat.append(dt)
            hits_all.append(hits)
        out[mode] = {"p50_ms": pct(lat, 50) * 1e3, "p95_ms": pct(lat, 95) * 1e3, "mean_ms": statistics.mean(lat) * 1e3}
        if mode == "visual":
            normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
            recall = []
            for q, hits in zip(qvecs, hits_all, strict=True):
                exact = set(np.argsort(-(normed @ (q / np.linalg.norm(q))))[:top_k].tolist())
                got = {int(h.doc_hash[1:]) * 10 + h.page - 1 for h in hits}
                recall.append(len(exact & got) / top_k)
            out[mode]["recall_at_k"] = statistics.mean(recall)
    return out


def run(
    n: int, dim: int, hnsw: bool, n_queries: int, top_k: int, batch: int, workdir: Path, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    vocab = make_vocab(rng)
    ranks = np.arange(1, len(vocab) + 1)
    zipf_p = (1 / ranks) / (1 / ranks).sum()
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    texts = [page_text(rng, vocab, zipf_p) for _ in range(n)]
    path = workdir / f"edge-{dim}-{'hnsw' if hnsw else 'exact'}"
    shutil.rmtree(path, ignore_errors=True)

    res: dict[str, Any] = {"n": n, "dim": dim, "dense_index": "hnsw" if hnsw else "exact", "batch": batch}
    now = utc_now()
    upsert_s = 0.0
    s = EdgeStore(path, dim, hnsw=hnsw)
    for b in range(0, n, batch):
        pts = [
            PagePoint(
                doc_hash=f"d{i // 10}",
                doc_path=f"/corpus/doc{i // 10}.pdf",
                page=i % 10 + 1,
                image_path=f"/idx/pages/d{i // 10}/{i % 10 + 1:04d}.png",
                text=texts[i],
                title=f"Document {i // 10}",
                indexed_at=now,
                visual=vectors[i],
            )
            for i in range(b, min(n, b + batch))
        ]
        dt, _ = timed(s.upsert, pts)
        upsert_s += dt
    res["upsert_s"] = upsert_s
    res["upsert_pages_per_s"] = n / upsert_s
    res["close_after_upsert_s"], _ = timed(s.close)
    res["unoptimized"] = open_close(path)
    s = EdgeStore(path)
    res["unoptimized"]["queries"] = bench_queries(s, rng, vectors, texts, max(20, n_queries // 4), top_k)
    res["optimize_s"], _ = timed(s.optimize)
    s.close()
    res["optimized"] = open_close(path)
    s = EdgeStore(path)
    res["optimized"]["queries"] = bench_queries(s, rng, vectors, texts, n_queries, top_k)
    small = [PagePoint(f"x{i}", "/x.pdf", 1, text=texts[i], visual=vectors[i]) for i in range(32)]
    res["upsert_32_pages_s"], _ = timed(s.upsert, small)
    res["bytes_on_disk"] = s.bytes_on_disk()
    s.close()
    # one full per-batch cycle as the indexer does it: open, write 32 pages, close
    cycles = []
    for k in range(5):
        batch_pts = [PagePoint(f"c{k}-{i}", "/c.pdf", 1, text=texts[i], visual=vectors[i]) for i in range(32)]
        cycles.append(timed(_cycle, path, batch_pts)[0])
    res["per_batch_cycle_s"] = statistics.median(cycles)
    res["per_batch_cycle_s_max"] = max(cycles)
    return res


def _cycle(path: Path, pts: list[PagePoint]) -> None:
    with EdgeStore(path) as s:
        s.upsert(pts)


def print_table(results: list[dict[str, Any]]) -> None:
    for r in results:
        print(
            f"\n== Edge store: {r['n']:,} pages, dim {r['dim']}, {r['dense_index']} dense search, "
            f"{r['bytes_on_disk'] / 2**20:.0f} MiB on disk =="
        )
        print(f"upsert             {r['upsert_pages_per_s']:10.0f} pages/s  (batches of {r['batch']}, incl. BM25)")
        print(f"optimize           {r['optimize_s']:10.2f} s")
        for state in ("unoptimized", "optimized"):
            o = r[state]
            print(
                f"open [{state:11}] {o['open_s_median'] * 1e3:8.1f} ms median ({o['open_s_max'] * 1e3:.1f} max), "
                f"close {o['close_s_median'] * 1e3:.1f} ms"
            )
        print(
            f"per-batch cycle    {r['per_batch_cycle_s'] * 1e3:10.1f} ms median "
            f"({r['per_batch_cycle_s_max'] * 1e3:.1f} max; open + upsert 32 pages + close)"
        )
        print(f"{'query':8} {'state':12} {'p50 ms':>8} {'p95 ms':>8} {'recall@k':>9}")
        for state in ("unoptimized", "optimized"):
            for mode, q in r[state]["queries"].items():
                rec = f"{q['recall_at_k']:.3f}" if "recall_at_k" in q else ""
                print(f"{mode:8} {state:12} {q['p50_ms']:8.2f} {q['p95_ms']:8.2f} {rec:>9}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument(
        "--configs",
        nargs="+",
        default=["2048:exact", "2048:hnsw", "64:exact"],
        help="DIM:exact|hnsw, one store each (default: the shipped exact config at 2048 and 64, HNSW at 2048)",
    )
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the shards here (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="docrag-bench-")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = []
        for cfg in args.configs:
            dim, _, kind = cfg.partition(":")
            hnsw = kind == "hnsw"
            results.append(run(args.n, int(dim), hnsw, args.queries, args.top_k, args.batch, workdir, args.seed))
    finally:
        if tmp is not None:
            tmp.cleanup()
    print_table(results)
    report = {
        "benchmark": "store_query",
        "when": utc_now(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "qdrant_edge_py": version("qdrant-edge-py"),
        "queries": args.queries,
        "top_k": args.top_k,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

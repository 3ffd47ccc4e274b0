"""`docrag index` end to end: pages/s (text only, and with the `small` encoder on CPU), peak RSS, the no-op
re-run, and query latency per search mode over 10k+ stored pages.

    python benchmarks/index.py                      # all Debian PDFs text-only, a subset with the encoder, 10k query
    python benchmarks/index.py --quick              # smoke run (tiny subsets, < 1 minute)
    python benchmarks/index.py --pages 300 --encoder-pages 40 --query-pages 20000
    python benchmarks/index.py --formats-only       # just the page-format sweep and the `--encoder auto` no-op

Page-store sweep (text only, all ~590 Debian pages, a fresh process and index each): pages/s, CPU ms, image and
whole-index KiB per page for each `page_store` and render-worker count (`--formats STORE:WORKERS,...`). Then the
no-op re-run as a user types it, `docrag index PATHS` with the default `--encoder auto`, in a fresh process:
its wall time, peak RSS and whether it imported torch.

Indexing goes through `indexing.pipeline.Indexer` with the default `IndexOptions` (PyMuPDF at 144 dpi, WebP page
images, BM25, Qdrant Edge), each run in a fresh subprocess and a fresh index folder, so its peak RSS is its own.
The second (no-op) run is another fresh process on the same folder. Query latency over 10k+ pages reuses
`benchmarks/store_query.py`'s store builder (synthetic Zipf page text, random vectors; `Store.query`, the call
`docrag search` makes); `DocRag.search` end to end (lock + open + query encoding + query + close) is measured on the
real indexes built here. Prints tables and writes benchmarks/results/index.json (--quick: index-quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Only what the indexing children need at module level: torch (~200 MB of RSS, which a text-only
# `docrag index --encoder none` never loads) comes with benchmarks.common.device_name, called in main() only.
from benchmarks.common import open_pdf  # noqa: E402
from benchmarks.store_query import pct  # noqa: E402
from benchmarks.store_query import run as store_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = ROOT / ".test-data" / "debian"
MOCA_3B_DIM = 2048
# What `docrag search` gets asked about these manuals (auto-multiple-choice docs, Debian reference card).
QUERIES = ["scanning the answer sheets", "how to mark the boxes", "LaTeX source of the exam", "automatic grading",
           "export marks to a spreadsheet", "apt-get install a package", "multiple choice question with one answer",
           "students names list", "configure the printer", "annotate the corrected copies"]


# ---------------------------------------------------------------------------------------------- corpus


def corpus(n_pages: int | None, dest: Path, folder: Path = DEBIAN) -> dict[str, Any]:
    """The PDFs of ``folder`` (the Debian ones) as they are (n_pages None or >= their total), else n_pages of them
    spread evenly across every document, written as smaller PDFs into ``dest``."""
    sources = sorted(p for p in folder.iterdir() if p.name.endswith((".pdf", ".pdf.gz"))) if folder.is_dir() else []
    if not sources:
        sys.exit(f"no PDFs in {folder}: run `make test-data` first")
    counts = []
    for src in sources:
        with open_pdf(src) as doc:
            counts.append(doc.page_count)
    total = sum(counts)
    if n_pages is None or n_pages >= total:
        return {"paths": [str(p) for p in sources], "pages": total, "documents": len(sources), "subset": False}
    picks = [k * total // n_pages for k in range(n_pages)]  # evenly spaced, distinct since total >= n_pages
    dest.mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    for src, count in zip(sources, counts, strict=True):
        local = [p - start for p in picks if start <= p < start + count]
        start += count
        if not local:
            continue
        out = dest / (src.name.removesuffix(".gz").removesuffix(".pdf") + ".pdf")
        with open_pdf(src) as doc:
            doc.select(local)
            doc.save(out, garbage=3, deflate=True)
        paths.append(str(out))
    return {"paths": paths, "pages": n_pages, "documents": len(paths), "subset": True}


# ---------------------------------------------------------------------------------------------- child process


def _proc_status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _du(path: Path) -> int:
    """Bytes allocated on disk (Qdrant preallocates sparse files: their size overstates it)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


class ChildrenPeakRss:
    """The largest VmHWM among this process's children (the render workers) while it runs, sampled by a thread:
    their ``ru_maxrss`` would start at this process's RSS when they were forked, so it cannot say."""

    def __init__(self, every_s: float = 0.1) -> None:
        import threading

        self.peak_kib, self._done = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._done.wait(every_s):
            for task in Path("/proc/self/task").iterdir():
                try:
                    kids = (task / "children").read_text().split()
                except OSError:
                    continue
                for pid in kids:
                    try:
                        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                            if line.startswith("VmHWM:"):
                                self.peak_kib = max(self.peak_kib, int(line.split()[1]))
                    except OSError:
                        pass

    def stop(self) -> float:
        """Stop sampling; the peak in MiB (0 when no child ran)."""
        self._done.set()
        self._thread.join()
        return self.peak_kib / 1024


class _TimedEmbedder:
    """The encoder, with the time spent in `encode_documents` added up (the rest is render, save, BM25, store)."""

    def __init__(self, enc) -> None:
        self.enc, self.name, self.seconds = enc, enc.name, 0.0

    @property
    def dim(self) -> int:
        return self.enc.dim

    def encode_documents(self, images):
        t0 = time.perf_counter()
        try:
            return self.enc.encode_documents(images)
        finally:
            self.seconds += time.perf_counter() - t0


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One indexing run (+ optional end-to-end searches) in this fresh process; see `run_child`."""
    if spec["task"] == "init":
        from moca_train.presets import init_checkpoint

        path = init_checkpoint("small", spec["out"])
        return {"checkpoint": str(path)}

    from indexing.pipeline import Indexer, IndexOptions

    out: dict[str, Any] = {}
    enc = None
    if spec.get("encoder"):
        import torch

        from moca_train.modeling import MoCaEncoder

        t0 = time.perf_counter()
        enc = MoCaEncoder.from_pretrained(spec["encoder"])
        out["encoder_load_s"] = time.perf_counter() - t0
        out["dim"] = enc.dim
        out["torch_threads"] = torch.get_num_threads()
        out["rss_after_load_mib"] = _proc_status_kib("VmRSS") / 1024
    index_dir = Path(spec["index_dir"])
    if spec["task"] == "cli":  # `docrag index PATHS --index-dir D` as typed, default encoder (auto)
        import contextlib
        import io

        from app.cli import app

        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the summary JSON is not this benchmark's output
                app(["index", *spec["paths"], "--index-dir", str(index_dir), "--json"], prog_name="docrag")
        except SystemExit as e:
            if e.code:
                raise
        return {"launch_to_done_s": time.time() - spec["launched_at"], "peak_rss_mib": _proc_status_kib("VmHWM") / 1024,
                "torch_imported": "torch" in sys.modules}
    fmt = dict(spec.get("format") or {})
    text_encoder = None
    if fmt.pop("text_encoder", None):  # the default text model (app.textenc's built-in), as `docrag index` uses it
        from app.textenc import BuiltinTextEncoder

        text_encoder = BuiltinTextEncoder()
    opts = IndexOptions(command="benchmarks/index.py", **fmt)
    timed = _TimedEmbedder(enc) if enc is not None else None
    workers_hwm = ChildrenPeakRss()
    t0 = time.perf_counter()
    r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    report = Indexer(index_dir, timed, opts, text_embedder=text_encoder).sync(spec["paths"])
    out["sync_s"] = time.perf_counter() - t0
    # this process (all threads) and its render workers, reaped when the run closed its pool
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    out["sync_cpu_s"] = sum(b.ru_utime - a.ru_utime + b.ru_stime - a.ru_stime for a, b in ((r0, r1), (c0, c1)))
    out["worker_peak_rss_mib"] = workers_hwm.stop()
    out["launch_to_synced_s"] = time.time() - spec["launched_at"]
    if timed is not None:
        out["encode_s"] = timed.seconds
    out["report"] = report.as_dict()
    # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark into ru_maxrss across fork+exec.
    out["peak_rss_mib"] = _proc_status_kib("VmHWM") / 1024
    out["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["index_bytes"] = _du(index_dir)
    out["options"] = {"renderer": opts.renderer, "dpi": opts.dpi, "page_format": opts.page_format,
                      "webp_method": opts.webp_method, "page_store": opts.page_store, "workers": opts.workers,
                      "batch_pages": opts.batch_pages, "max_pixels": opts.max_pixels}
    out["page_image_bytes"] = sum(p.stat().st_size for p in (index_dir / "pages").rglob("*") if p.is_file()) + sum(
        p.stat().st_size for p in index_dir.glob("thumbnails.sqlite*"))
    if spec.get("search_modes"):
        out["search"] = _search_latency(index_dir, enc, spec["encoder"], spec["search_modes"], spec["n_search"])
    return out


def _search_latency(index_dir: Path, enc, encoder_path: str | None, modes: list[str], n: int) -> dict[str, Any]:
    """`DocRag.search` as `docrag search` runs it: manifest check, query encoding, lock, shard open, query, close."""
    from app.config import Config
    from app.service import DocRag

    rag = DocRag(Config(index_dir=index_dir, encoder=encoder_path or "none"), encoder=enc)
    res: dict[str, Any] = {}
    for mode in modes:
        rag.search(QUERIES[0], mode=mode)  # warm-up
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            rag.search(QUERIES[i % len(QUERIES)], mode=mode)
            lat.append(time.perf_counter() - t0)
        res[mode] = {"n": n, "p50_ms": pct(lat, 50) * 1e3, "p95_ms": pct(lat, 95) * 1e3,
                     "mean_ms": statistics.mean(lat) * 1e3}
    if enc is not None:  # the query-encoding share of the above
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            enc.encode_queries([QUERIES[i % len(QUERIES)]])
            lat.append(time.perf_counter() - t0)
        res["encode_query_only"] = {"n": n, "p50_ms": pct(lat, 50) * 1e3, "p95_ms": pct(lat, 95) * 1e3}
    return res


class OtherLoad:
    """How many cores other processes kept busy while this block ran: all CPUs' busy time (/proc/stat) minus this
    process's and its waited-for children's (the machine may be shared; the numbers here are only as good as that)."""

    def __enter__(self) -> OtherLoad:
        self._t0, self._busy0, self._ours0 = time.perf_counter(), self._busy(), self._ours()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._t0
        others = (self._busy() - self._busy0) - (self._ours() - self._ours0)
        self.cores = max(0.0, others / wall) if wall > 0 else 0.0

    @staticmethod
    def _busy() -> float:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    @staticmethod
    def _ours() -> float:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def run_child(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run `child(spec)` in a fresh interpreter; its wall time includes start-up, imports and model loading."""
    spec_path = workdir / f"spec-{time.monotonic_ns()}.json"
    result_path = spec_path.with_suffix(".out.json")
    spec_path.write_text(json.dumps({**spec, "result": str(result_path), "launched_at": time.time()}))
    t0 = time.perf_counter()
    with OtherLoad() as other:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)], cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"child {spec['task']} failed with exit code {proc.returncode}")
    out = json.loads(result_path.read_text())
    out["process_wall_s"] = wall
    out["other_load_cores"] = other.cores
    return out


# ---------------------------------------------------------------------------------------------- parent


def bench_indexing(mode: str, data: dict[str, Any], encoder: str | None, workdir: Path,
                   search_modes: list[str], n_search: int) -> dict[str, Any]:
    index_dir = workdir / f"index-{mode}"
    spec = {"task": "index", "paths": data["paths"], "index_dir": str(index_dir), "encoder": encoder}
    print(f"[{mode}] indexing {data['pages']} pages in {data['documents']} documents ...", flush=True)
    first = run_child(spec, workdir)
    print(f"[{mode}] {first['sync_s']:.1f} s; no-op re-run ...", flush=True)
    second = run_child({**spec, "search_modes": search_modes, "n_search": n_search}, workdir)
    rep = first["report"]
    if rep["failed"] or rep["pages"] != data["pages"]:
        print(f"[{mode}] warning: {rep['pages']} pages stored of {data['pages']}, {rep['failed']} failed: "
              f"{rep['problems'][:3]}", file=sys.stderr)
    if second["report"]["pages_rendered"]:
        print(f"[{mode}] warning: the second run rendered {second['report']['pages_rendered']} pages", file=sys.stderr)
    return {
        "mode": mode,
        "encoder": "small (random init, float32)" if encoder else None,
        "documents": data["documents"],
        "subset": data["subset"],
        "pages": rep["pages"],
        "seconds": first["sync_s"],
        "pages_per_s": rep["pages"] / first["sync_s"],
        "encode_s": first.get("encode_s"),
        # the share of the run the encoder was embedding (the workers render meanwhile): 1.0 = never waiting
        "encoder_busy": first["encode_s"] / first["sync_s"] if first.get("encode_s") is not None else None,
        "encoder_load_s": first.get("encoder_load_s"),
        "other_load_cores": first["other_load_cores"],
        "noop_other_load_cores": second["other_load_cores"],
        "process_wall_s": first["process_wall_s"],
        "peak_rss_mib": first["peak_rss_mib"],
        "rss_after_load_mib": first.get("rss_after_load_mib"),
        "index_mib": first["index_bytes"] / 2**20,
        "noop_s": second["sync_s"],
        # a second `docrag index` as the user waits for it: interpreter start, imports, encoder load, no-op sync
        "noop_process_s": second["launch_to_synced_s"],
        "noop_peak_rss_mib": second["peak_rss_mib"],
        "noop_report": second["report"],
        "report": rep,
        "dim": first.get("dim"),
        "torch_threads": first.get("torch_threads"),
        "options": first["options"],
        "search_e2e": second.get("search", {}),
    }


def parse_formats(text: str) -> list[dict[str, Any]]:
    """"thumbnail:2,full:0,thumbnail:auto:text" -> IndexOptions overrides: page_store, workers (render processes;
    0 = in-process, auto = the default, the CPUs available), and ``text`` for the default dense text model."""
    out = []
    for item in text.split(","):
        store, workers, *rest = item.strip().split(":")
        fmt: dict[str, Any] = {"page_store": store, "workers": None if workers == "auto" else int(workers)}
        if rest == ["text"]:
            fmt["text_encoder"] = "builtin"
        elif rest:
            raise SystemExit(f"--formats: cannot read {item!r} (STORE:WORKERS[:text])")
        out.append(fmt)
    return out


def bench_floor(paths: list[str], workers: list[int]) -> dict[int, dict[str, Any]]:
    """The plain PyMuPDF loop (144 dpi render + get_text, `render_floor.py`'s "render" step) per process count."""
    from benchmarks.render_floor import measure

    out = {}
    for w in sorted(set(workers)):
        print(f"[floor] render + text, {w} process(es) ...", flush=True)
        out[w] = measure("render", paths, w)
    return out


def _floor_workers(fmt: dict[str, Any], cpus: int) -> int:
    w = cpus if fmt["workers"] is None else fmt["workers"]
    return max(1, min(w, cpus))


def bench_formats(data: dict[str, Any], formats: list[dict[str, Any]], workdir: Path) -> list[dict[str, Any]]:
    from indexing.cpus import available_cpus

    cpus = available_cpus()
    floor = bench_floor(data["paths"], [_floor_workers(f, cpus) for f in formats])
    rows = []
    for i, fmt in enumerate(formats):
        index_dir = workdir / f"index-format-{i}"
        label = fmt["page_store"] + (" + dense text" if fmt.get("text_encoder") else "")
        workers = "auto" if fmt["workers"] is None else fmt["workers"]
        print(f"[format] page_store={label}, workers={workers}: {data['pages']} pages ...", flush=True)
        r = run_child({"task": "index", "paths": data["paths"], "index_dir": str(index_dir), "format": fmt}, workdir)
        rep = r["report"]
        f = floor[_floor_workers(fmt, cpus)]
        pps = rep["pages"] / r["sync_s"]
        rows.append({"format": label, "workers": workers, "pages": rep["pages"], "seconds": r["sync_s"],
                     "pages_per_s": pps, "floor_processes": f["workers"], "floor_pages_per_s": f["pages_per_s"],
                     "of_floor": pps / f["pages_per_s"],
                     # CPU seconds per page, this process and its workers: 2000 / this bounds pages/s on 2 idle cores
                     "cpu_ms_per_page": r["sync_cpu_s"] / max(1, rep["pages"]) * 1e3,
                     "kib_per_page": r["page_image_bytes"] / max(1, rep["pages"]) / 1024,
                     "index_kib_per_page": r["index_bytes"] / max(1, rep["pages"]) / 1024,
                     "peak_rss_mib": r["peak_rss_mib"], # no workers: a child seen then is not a render worker
                     "worker_peak_rss_mib": r["worker_peak_rss_mib"] if fmt["workers"] != 0 else None,
                     "other_load_cores": r["other_load_cores"],
                     "failed": rep["failed"], "options": r["options"], "index_dir": str(index_dir)})
        if i:
            shutil.rmtree(index_dir, ignore_errors=True)  # keep the first: the no-op run uses it
    return rows


def bench_rss_scaling(data: dict[str, Any], workdir: Path, fractions: tuple[float, ...] = (0.25, 1.0)
                      ) -> list[dict[str, Any]]:
    """Peak RSS of the default text-only run (thumbnails, automatic workers) on a quarter of the pages and on all
    of them: flat means it does not grow with the number of pages."""
    rows = []
    for frac in fractions:
        sub = corpus(max(1, round(data["pages"] * frac)), workdir / f"corpus-rss-{frac}")
        index_dir = workdir / f"index-rss-{frac}"
        print(f"[rss] defaults, {sub['pages']} pages ...", flush=True)
        r = run_child({"task": "index", "paths": sub["paths"], "index_dir": str(index_dir),
                       "format": {"page_store": "thumbnail", "workers": None}}, workdir)
        rows.append({"pages": r["report"]["pages"], "seconds": r["sync_s"],
                     "pages_per_s": r["report"]["pages"] / r["sync_s"], "peak_rss_mib": r["peak_rss_mib"],
                     "worker_peak_rss_mib": r["worker_peak_rss_mib"], "other_load_cores": r["other_load_cores"]})
        shutil.rmtree(index_dir, ignore_errors=True)
    return rows


def bench_cli_noop(data: dict[str, Any], index_dir: Path, workdir: Path, runs: int = 3) -> dict[str, Any]:
    """`docrag index PATHS` (default `--encoder auto`) on an index where nothing changed, as a user waits for it."""
    results = [run_child({"task": "cli", "paths": data["paths"], "index_dir": str(index_dir)}, workdir)
               for _ in range(runs)]
    return {"runs": runs, "process_s": [r["launch_to_done_s"] for r in results],
            "best_s": min(r["launch_to_done_s"] for r in results),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "torch_imported": any(r["torch_imported"] for r in results),
            "other_load_cores": max(r["other_load_cores"] for r in results)}


def bench_queries(n: int, dims: list[int], n_queries: int, workdir: Path) -> list[dict[str, Any]]:
    out = []
    for dim in dims:
        print(f"[query] building a {n:,}-page store, dim {dim} ...", flush=True)
        t0 = time.perf_counter()
        with OtherLoad() as other:
            res = store_run(n, dim, False, n_queries, 5, 64, workdir, seed=0)
        res["wall_s"] = time.perf_counter() - t0
        res["other_load_cores"] = other.cores
        out.append(res)
    return out


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny subsets, one 1k-page query store")
    ap.add_argument("--pages", type=int, default=None, help="text-only pages (default: all Debian PDFs, ~590)")
    ap.add_argument("--encoder-pages", type=int, default=None, help="pages indexed with the small encoder (96)")
    ap.add_argument("--query-pages", type=int, default=None, help="pages in the query-latency store (10000)")
    ap.add_argument("--query-dims", type=int, nargs="+", default=None,
                    help=f"dense dims of the query stores (default: {MOCA_3B_DIM} = MoCa-3B, and the small encoder's)")
    ap.add_argument("--queries", type=int, default=None, help="queries per mode on the 10k store (200)")
    ap.add_argument("--search-queries", type=int, default=None, help="DocRag.search calls per mode (50)")
    ap.add_argument("--formats", default="thumbnail:0,thumbnail:1,thumbnail:2,thumbnail:auto,none:2,full:2,"
                                         "thumbnail:auto:text",
                    help="page-store sweep, STORE:WORKERS[:text],... (WORKERS: a number or auto; '' to skip)")
    ap.add_argument("--formats-only", action="store_true", help="only the page-format sweep and the CLI no-op")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the indexes here (default: a temp dir)")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child is not None:
        spec = json.loads(args.child.read_text())
        Path(spec["result"]).write_text(json.dumps(child(spec)))
        return
    from benchmarks.common import device_name, print_table, write_json

    q = args.quick
    text_pages = args.pages if args.pages is not None else (16 if q else None)
    enc_pages = args.encoder_pages if args.encoder_pages is not None else (3 if q else 96)
    query_pages = args.query_pages if args.query_pages is not None else (1000 if q else 10_000)
    n_queries = args.queries if args.queries is not None else (30 if q else 200)
    n_search = args.search_queries if args.search_queries is not None else (5 if q else 50)

    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="docrag-bench-index-")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = loadavg()
    started = time.perf_counter()
    formats, rss, cli_noop, indexing, queries, rows = [], [], None, [], [], []
    try:
        text_data = corpus(text_pages, workdir / "corpus-text")
        if args.formats:
            formats = bench_formats(text_data, parse_formats(args.formats), workdir)
            rss = bench_rss_scaling(text_data, workdir)
            cli_noop = bench_cli_noop(text_data, Path(formats[0]["index_dir"]), workdir)
        if not args.formats_only:
            enc_data = corpus(enc_pages, workdir / "corpus-encoder")
            ckpt = run_child({"task": "init", "out": str(workdir / "small")}, workdir)["checkpoint"]
            indexing = [
                bench_indexing("text only", text_data, None, workdir, ["text"], n_search),
                bench_indexing("small encoder", enc_data, ckpt, workdir, ["text", "visual", "hybrid"], n_search),
            ]
            small_dim = indexing[1]["dim"]
            dims = args.query_dims or ([small_dim] if q else sorted({MOCA_3B_DIM, small_dim}, reverse=True))
            queries = bench_queries(query_pages, dims, n_queries, workdir)
    finally:
        if tmp is not None:
            tmp.cleanup()
    total_s = time.perf_counter() - started
    load_after = loadavg()

    device = device_name()
    if formats:
        print(f"\n== Page formats, text only: docrag Indexer, {device}, load average {load_before} -> {load_after} ==")
        print_table(formats, ["format", "workers", "pages", "seconds", "pages_per_s", "floor_pages_per_s", "of_floor",
                              "cpu_ms_per_page", "kib_per_page", "index_kib_per_page", "peak_rss_mib",
                              "worker_peak_rss_mib", "other_load_cores"])
    if rss:
        print("\n== Peak RSS against the number of pages (defaults, text only) ==")
        print_table(rss, ["pages", "seconds", "pages_per_s", "peak_rss_mib", "worker_peak_rss_mib", "other_load_cores"])
    if cli_noop:
        print(f"\n`docrag index` no-op, --encoder auto: best {cli_noop['best_s']:.2f} s of {cli_noop['process_s']}, "
              f"peak RSS {cli_noop['peak_rss_mib']:.0f} MiB, torch imported: {cli_noop['torch_imported']}")
    if indexing:
        print(f"\n== Indexing: docrag Indexer, {device}, load average {load_before} -> {load_after} ==")
        print_table(indexing, ["mode", "documents", "pages", "seconds", "pages_per_s", "encode_s", "encoder_busy",
                               "peak_rss_mib",
                               "index_mib", "noop_s", "noop_process_s", "other_load_cores"])
        rows = []
        for r in queries:
            for mode, v in r["optimized"]["queries"].items():
                rows.append({"what": f"Store.query, {r['n']:,} pages, dim {r['dim']}", "mode": mode,
                             "p50_ms": v["p50_ms"], "p95_ms": v["p95_ms"], "n": n_queries,
                             "other_load_cores": r["other_load_cores"]})
        for r in indexing:
            for mode, v in r["search_e2e"].items():
                enc_only = mode == "encode_query_only"
                label = ("small encoder: encode_queries([q]) alone" if enc_only
                         else f"DocRag.search, {r['mode']} index, {r['pages']} pages")
                rows.append({"what": label, "mode": "-" if enc_only else mode,
                             "p50_ms": v["p50_ms"], "p95_ms": v["p95_ms"], "n": v["n"],
                             "other_load_cores": r["noop_other_load_cores"]})
        print(f"\n== Query latency (top 5), {device} ==")
        print_table(rows, ["what", "mode", "p50_ms", "p95_ms", "n", "other_load_cores"])
    print(f"\ntotal {total_s:.0f} s")

    name = "index-quick" if q else ("index-formats" if args.formats_only else "index")
    write_json(name, {  # a smoke run never overwrites the real results
        "benchmark": "index",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python benchmarks/index.py " + " ".join(sys.argv[1:]),
        "device": device,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {p: version(p) for p in ("torch", "transformers", "qdrant-edge-py", "pymupdf")},
        "load_average_before": load_before,
        "load_average_after": load_after,
        "total_s": total_s,
        "page_formats": formats,
        "rss_scaling": rss,
        "cli_noop_encoder_auto": cli_noop,
        "indexing": indexing,
        "query_latency": rows,
        "query_stores": queries,
    })


if __name__ == "__main__":
    main()

"""Search quality on questions written by people (dev-v1), and what the default text model costs a search.

dev-v1 (`../shared/evalsets/dev-v1/`, its README says how it was made): 120 human-written questions, English and
French, text and visual, with graded qrels, over five real Debian manuals (968 pages). This script

1. fetches the PDFs with the set's `fetch_pdfs.sh` (apt) into `.test-data/dev-v1/` beside its query files;
2. indexes them once with the defaults (BM25 + the built-in dense text model) through `docrag eval`'s runner;
3. scores every mode with the defaults, the old defaults (k=1, dense 0.125: tuned on `docrag eval build`'s
   synthetic queries) and the RRF paper's k=60 with equal weights, on all queries and on the two seeded halves
   that `docrag eval calibrate` uses (tuning / held-out);
4. runs `docrag eval calibrate`'s tuner from the old defaults: the defaults in app/config.py are its choice;
5. paired randomisation tests (`docrag eval --compare`'s) of the defaults against the old ones and against BM25;
6. times `docrag search` as a user runs it (a new process per query) in text mode and with the defaults.

    python benchmarks/quality.py                    # the recorded run (results/quality.json)
    python benchmarks/quality.py --rerank cross-encoder:/models/ms-marco-MiniLM-L6-v2   # + a reranker's rows
    python benchmarks/quality.py --quick            # smoke run: one manual, its queries
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, device_name, print_table, write_json  # noqa: E402

SOURCE = ROOT.parent / "shared" / "evalsets" / "dev-v1"
OLD_DEFAULTS = {"rrf_k": 1, "weight_text": 1.0, "weight_dense": 0.125}
RRF_PAPER = {"rrf_k": 60, "weight_text": 1.0, "weight_dense": 1.0}
METRICS = ("ndcg@5", "ndcg@10", "recall@5", "mrr@10")


def prepare_set(source: Path, out: Path, docs: list[str] | None) -> Path:
    """The set's files beside its PDFs (fetched by its own script; nothing committed)."""
    out.mkdir(parents=True, exist_ok=True)
    if not all((out / n).is_file() for n in ("lilypond-learning.pdf", "gri.pdf", "why3-manual.pdf",
                                              "ubuntu-packaging-guide.pdf", "lilypond-learning-fr.pdf")):
        env = {**os.environ, "SKIP_APT": os.environ.get("SKIP_APT", "0")}
        subprocess.run(["sh", str(source / "fetch_pdfs.sh"), str(out)], check=True, env=env)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels.tsv"):
        shutil.copyfile(source / name, out / name)
    if docs:  # a smaller set: those PDFs' pages and the queries about them
        corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines() if line.strip()]
        keep = {r["_id"] for r in corpus if r["pdf"] in docs}
        qrels = [line.split("\t") for line in (source / "qrels.tsv").read_text().splitlines()[1:] if line.strip()]
        queries = {q for q, c, _ in qrels if c in keep}
        sub = out / "subset"
        sub.mkdir(exist_ok=True)
        for pdf in docs:
            shutil.copyfile(out / pdf, sub / pdf)
        (sub / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus if r["_id"] in keep))
        (sub / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            "\t".join(row) + "\n" for row in qrels if row[0] in queries and row[1] in keep))
        (sub / "queries.jsonl").write_text("".join(
            line + "\n" for line in (source / "queries.jsonl").read_text().splitlines()
            if line.strip() and json.loads(line)["_id"] in queries))
        return sub
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=SOURCE, help="the dev-v1 folder (queries, qrels, fetch script)")
    ap.add_argument("--data", type=Path, default=ROOT / ".test-data" / "dev-v1", help="where its PDFs go")
    ap.add_argument("--index-dir", type=Path, default=ROOT / ".test-data" / "quality-index")
    ap.add_argument("--docs", nargs="*", default=None, help="only these PDFs of the set (and their queries)")
    ap.add_argument("--rerank", default=None, help="also score with this reranker (cross-encoder:NAME | llm)")
    ap.add_argument("--searches", type=int, default=9, help="timed `docrag search` calls per mode")
    ap.add_argument("--quick", action="store_true", help="smoke run: one manual, 3 timed searches")
    ap.add_argument("--json", type=Path, default=None, help="write here instead of results/quality.json")
    args = ap.parse_args()
    if args.quick:
        args.docs = args.docs or ["ubuntu-packaging-guide.pdf"]
        args.searches = 3
        args.index_dir = args.index_dir.with_name(args.index_dir.name + "-quick")
    payload = run(args)
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    else:
        write_json("quality" + ("-quick" if args.quick else ""), payload)


def run(args: argparse.Namespace) -> dict:
    from app.config import load_config
    from app.evaluation.calibrate import Calibrator, Setting, split_queries
    from app.evaluation.compare import paired_test
    from app.evaluation.dataset import load_dataset
    from app.evaluation.metrics import mean
    from app.evaluation.runner import EvalRunner
    from benchmarks.eval import versions

    set_dir = prepare_set(args.source, args.data, args.docs)
    ds = load_dataset(set_dir)
    base = load_config({"index_dir": args.index_dir, "encoder": "none", "text_encoder": "auto"})
    defaults = {"rrf_k": base.rrf_k, "weight_text": base.weight_text, "weight_dense": base.weight_dense}
    tune_ids, held_ids = split_queries([q.id for q in ds.queries])
    subsets = ds.subsets()

    def score(modes: list[str], **settings):
        cfg = dataclasses.replace(base, **settings)
        return EvalRunner(ds, cfg, name="dev-v1").run(modes, 100, "none")

    started = time.monotonic()
    first = score(["text", "dense", "hybrid"])
    index_s = time.monotonic() - started
    per_mode = {"text (BM25)": first.modes["text"], "dense (built-in model)": first.modes["dense"],
                "hybrid, defaults": first.modes["hybrid"],
                "hybrid, old defaults (k=1, dense 0.125)": score(["hybrid"], **OLD_DEFAULTS).modes["hybrid"],
                "hybrid, k=60 equal weights": score(["hybrid"], **RRF_PAPER).modes["hybrid"]}
    if args.rerank:
        r = score(["text", "hybrid"], rerank=args.rerank)
        per_mode[f"text + rerank {args.rerank}"] = r.modes["text"]
        per_mode[f"hybrid + rerank {args.rerank}"] = r.modes["hybrid"]
    rows = []
    for label, m in per_mode.items():
        row = {"run": label, **{k: round(m.metrics[k], 4) for k in METRICS}}
        row["tune"] = round(mean(m.per_query, tune_ids)["ndcg@5"], 4)
        row["held_out"] = round(mean(m.per_query, held_ids)["ndcg@5"], 4)
        for name in ("language=en", "language=fr", "type=text", "type=visual"):
            if name in subsets:
                row[name] = round(mean(m.per_query, subsets[name])["ndcg@5"], 4)
        rows.append(row)
    print_table(rows, ["run", *METRICS, "tune", "held_out", "language=en", "language=fr", "type=text",
                       "type=visual"])

    # How the defaults were chosen: `docrag eval calibrate` from the old defaults.
    cal = Calibrator(ds, dataclasses.replace(base, **OLD_DEFAULTS), name="dev-v1", encoder="none").run()
    print(f"\ncalibrate from the old defaults: tuned {cal.tuned.describe()}; taken: {cal.after.describe()}")
    print_table(cal.rows, ["setting", "tune", "held_out"])
    chosen = Setting(defaults["rrf_k"], {"text": defaults["weight_text"], "dense": defaults["weight_dense"]})
    if chosen.config_values() != cal.after.config_values():
        print(f"note: app/config.py's defaults ({chosen.describe()}) are not calibrate's choice here")

    def test(a: str, b: str, ids: list[str] | None = None) -> dict:
        pa = {q: v["ndcg@5"] for q, v in per_mode[a].per_query.items() if ids is None or q in ids}
        pb = {q: v["ndcg@5"] for q, v in per_mode[b].per_query.items() if ids is None or q in ids}
        t = paired_test(pa, pb)
        return {"a_run": a, "b_run": b, "queries": "held-out" if ids is not None else "all",
                **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in t.items()}}

    tests = [test("hybrid, old defaults (k=1, dense 0.125)", "hybrid, defaults"),
             test("hybrid, old defaults (k=1, dense 0.125)", "hybrid, defaults", held_ids),
             test("text (BM25)", "hybrid, defaults"), test("dense (built-in model)", "hybrid, defaults"),
             test("hybrid, k=60 equal weights", "hybrid, defaults")]
    print("\npaired tests, nDCG@5 (b - a)")
    print_table([{**t, "ci95": f"[{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}]"} for t in tests],
                ["a_run", "b_run", "queries", "a", "b", "delta", "ci95", "p_value", "n_queries"])

    latency = search_latency(Path(first.index_dir), args.searches)
    print_table([{"mode": m, **v} for m, v in latency.items() if isinstance(v, dict)],
                ["mode", "median_s", "min_s", "max_s"])
    print(f"default / text: {latency['ratio']:.2f}x")
    return {"benchmark": "quality", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": "python benchmarks/quality.py " + " ".join(sys.argv[1:]), "device": device_name(),
            "versions": versions(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "set": str(args.source.name), "docs": args.docs, "queries": len(ds.queries),
            "pages": first.indexing.get("indexed_pages"), "tune_queries": len(tune_ids),
            "held_out_queries": len(held_ids), "index_seconds": round(index_s, 1), "indexing": first.indexing,
            "defaults": defaults, "old_defaults": OLD_DEFAULTS, "rows": rows, "calibration": cal.as_dict(),
            "paired_tests": tests, "search_latency": latency}


def search_latency(index_dir: Path, n: int) -> dict:
    """Wall time of whole `docrag search` processes: text mode, then the defaults (hybrid with dense)."""
    exe = Path(sys.executable).with_name("docrag")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ui.cli"]
    queries = ["how do I change the size of the staff", "what does the debian/rules file do",
               "comment installer LilyPond sous Windows", "how are axes drawn", "which provers does why3 support"]
    out: dict = {}
    for mode, extra in (("text", ["--mode", "text"]), ("default (hybrid, built-in model)", [])):
        times = []
        for i in range(n):
            started = time.perf_counter()
            subprocess.run([*cmd, "search", queries[i % len(queries)], "--index-dir", str(index_dir), "-k", "5",
                            *extra], check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        out[mode] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                     "max_s": round(max(times), 3), "n": n}
    out["ratio"] = round(out["default (hybrid, built-in model)"]["median_s"] / out["text"]["median_s"], 3)
    return out


if __name__ == "__main__":
    main()

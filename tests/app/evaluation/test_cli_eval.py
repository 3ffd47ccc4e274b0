"""`docrag eval` end to end: a set built from a real Debian PDF, the text-only (BM25) index re-used across
runs with identical metrics; image and PDF-page corpus rows with a tiny real encoder; `--compare`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.evaluation.metrics import METRICS


def docrag(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"DOCRAG_DPI": "48"})
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def amc_set(tmp_path_factory, debian_pdfs) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("eval")
    (base / "pdfs").mkdir()
    shutil.copy(debian_pdfs["auto-multiple-choice.en.pdf"], base / "pdfs" / "amc.pdf")
    code, out, err = docrag("eval", "build", str(base / "pdfs"), "--out", str(base / "set"), "--split", "0.3")
    assert code == 0, err
    assert "test queries on 30 pages" in out
    return base / "set", base / "idx"


def test_bm25_metrics_are_real_and_identical_across_runs(amc_set, tmp_path):
    ds, idx = amc_set
    args = ["eval", str(ds), "--encoder", "none", "--index-dir", str(idx), "--json"]
    code, first, err = docrag(*args, "--out", str(tmp_path / "one.json"))
    assert code == 0, err
    code, second, err = docrag(*args, "--out", str(tmp_path / "two.json"))
    assert code == 0, err
    metrics = json.loads(first)
    assert json.loads(second) == metrics
    assert set(metrics) == {"text"}
    text = metrics["text"]
    assert set(text) == {*METRICS, "n_queries", "subsets"} and text["n_queries"] >= 25
    assert text["ndcg@5"] > 0.5 and text["recall@10"] >= text["recall@5"] >= text["recall@1"]
    assert any(name.startswith("type=") for name in text["subsets"])
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert one["indexing"]["pages"] == 101 and not one["indexing"]["reused"]
    assert two["indexing"]["reused"] and two["metrics"] == metrics
    assert two["latency_ms"]["text"]["p50"] > 0 and Path(two["index_dir"]).parent == idx / "evals"


def test_human_table_and_errors(amc_set):
    ds, idx = amc_set
    code, out, err = docrag("eval", "run", str(ds), "--encoder", "none", "--index-dir", str(idx), "--mode", "text")
    assert code == 0, err
    assert "ndcg@5" in out and "type=" in out and "index re-used (101 pages" in out
    code, _, err = docrag("eval", str(ds), "--encoder", "none", "--index-dir", str(idx), "--mode", "visual")
    assert code == 1 and "needs visual vectors" in err
    code, _, err = docrag("eval", str(ds / "missing"), "--index-dir", str(idx))
    assert code == 1 and err.count("\n") == 1 and "not a folder" in err
    code, _, err = docrag("eval", "build", str(ds), "--out", str(ds.parent / "x"), "--llm")
    assert code == 1 and "no LLM configured" in err


@pytest.fixture(scope="module")
def mixed_set(tmp_path_factory, debian_pdfs) -> Path:
    """Two pages as image rows, three of a 6-page PDF as PDF rows (its other 3 pages are no corpus rows)."""
    import pymupdf

    ds = tmp_path_factory.mktemp("mixed")
    (ds / "img").mkdir()
    with pymupdf.open(debian_pdfs["sample-plain.pdf"]) as exam:
        exam.select([0, 1, 2, 3, 4, 5])  # pages 4 and 6 also name Egypt
        exam.save(ds / "exam.pdf")
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as doc:
        for n in (10, 11):
            doc[n - 1].get_pixmap(dpi=40).save(ds / "img" / f"amc-{n}.png")
    corpus = [{"_id": f"amc-{n}", "image": f"img/amc-{n}.png"} for n in (10, 11)]
    corpus += [{"_id": f"exam-{n}", "pdf": "exam.pdf", "page": n} for n in (1, 2, 3)]
    (ds / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    queries = [{"_id": "q-egypt", "text": "capital Egypt Cairo Conakry", "type": "text"},
               {"_id": "q-image", "text": "free software license", "type": "image"}]
    (ds / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (ds / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq-egypt\texam-1\t2\nq-image\tamc-10\t1\n")
    return ds


@pytest.fixture(scope="module")
def tiny_encoders(tmp_path_factory) -> list[Path]:
    """The same tiny encoder in two folders: two encoders to docrag, identical scores by construction."""
    from moca_train.presets import init_checkpoint

    base = tmp_path_factory.mktemp("enc")
    a = init_checkpoint("tiny", base / "a", seed=0, min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28)
    return [Path(a), Path(shutil.copytree(a, base / "b"))]


def test_image_and_pdf_rows_with_a_tiny_encoder(mixed_set, tiny_encoders, tmp_path):
    from app.config import load_config
    from app.evaluation.dataset import load_dataset
    from app.evaluation.runner import EvalRunner

    config = load_config({"index_dir": tmp_path / "idx", "encoder": str(tiny_encoders[0]), "dpi": 48})
    result = EvalRunner(load_dataset(mixed_set), config).run(["text", "visual", "hybrid"], top_k=10)
    corpus = {"amc-10", "amc-11", "exam-1", "exam-2", "exam-3"}
    visual = result.modes["visual"].ranking
    # Every corpus page, image or PDF page, comes back from the visual side, and nothing else does.
    assert all(set(ids) == corpus for ids in visual.values())
    assert result.indexing["indexed_pages"] == 2 + 6
    text = result.modes["text"].ranking
    # exam-1 is the only corpus page naming Egypt (exam.pdf's pages 4-6 are indexed, but never returned).
    assert text["q-egypt"][0] == "exam-1" and set(text["q-egypt"]) <= corpus
    assert not set(text["q-image"]) & {"amc-10", "amc-11"}  # an image row has no text layer for BM25
    assert result.metrics_json()["text"]["n_queries"] == 2


def test_compare_two_encoders(mixed_set, tiny_encoders, tmp_path):
    a, b = (str(p) for p in tiny_encoders)
    code, out, err = docrag("eval", str(mixed_set), "--encoder", a, "--compare", b, "--mode", "visual",
                            "--index-dir", str(tmp_path / "idx"), "--top-k", "10", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["a"]["encoder"] == a and payload["b"]["encoder"] == b
    assert set(payload["a"]["metrics"]) == {"visual"}
    # Same weights in two folders: two indexes, the same visual scores, no difference, p = 1.
    assert payload["a"]["metrics"] == payload["b"]["metrics"]
    test = payload["significance"]["visual"]["ndcg@10"]
    assert test["n_queries"] == 2 and test["delta"] == 0.0 and test["p_value"] == 1.0 and not test["significant"]
    assert len(list((tmp_path / "idx" / "evals").iterdir())) == 2  # one index per encoder


def test_a_failed_file_is_one_line_at_any_width(tmp_path, debian_pdfs):
    # A long path on a narrow terminal: the "failed PATH: reason" line stays whole, not wrapped at COLUMNS.
    pdfs = tmp_path / ("a-folder-with-a-long-name-" * 4)
    pdfs.mkdir()
    (pdfs / "broken.pdf").write_bytes(b"not a PDF at all")
    shutil.copy(debian_pdfs["auto-multiple-choice.en.pdf"], pdfs / "amc.pdf")
    result = CliRunner().invoke(app, ["eval", "build", str(pdfs), "--out", str(tmp_path / "set")],
                                env={"DOCRAG_DPI": "48", "COLUMNS": "40"})
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed")]
    assert failed and failed[0].startswith(f"failed {pdfs / 'broken.pdf'}: ") and len(failed[0]) > 40, result.stderr

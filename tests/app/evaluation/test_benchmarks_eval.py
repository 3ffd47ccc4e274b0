"""The benchmark entry point: RESULTS.md is generated from results/*.json (and is current), with device, versions
and date; `python -m benchmarks --report` regenerates it; missing results say so."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_results_md_is_generated_from_the_json(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import report

    text = report.render()
    assert text == (ROOT / "benchmarks" / "RESULTS.md").read_text(), "run `python -m benchmarks --report`"
    index = json.loads((ROOT / "benchmarks" / "results" / "index.json").read_text())
    first = index["indexing"][0]
    assert f"**{first['pages_per_s']:.3g}**" in text and index["versions"]["torch"] in text
    assert "Raw numbers: `benchmarks/results/index.json`" in text and "CPT training step" in text


def test_report_from_other_results(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import report

    eval_json = {"benchmark": "eval", "when": "2030-01-02T03:04:05+0000", "device": "NVIDIA H200",
                 "versions": {"torch": "9.9"}, "top_k": 100,
                 "dataset": {"documents": 1, "pages": 10, "queries": 8, "types": {"heading": 8}, "build_s": 0.5},
                 "runs": [{"encoder": "none", "indexing": {"pages_per_s": 12.5},
                           "modes": {"text": {"ndcg@5": 0.61234, "ndcg@10": 0.7, "recall@1": 0.5, "recall@5": 0.8,
                                              "recall@10": 0.9, "mrr@10": 0.65, "n_queries": 8,
                                              "latency_ms": {"p50": 20.0, "p95": 30.0},
                                              "subsets": {"type=heading": {"ndcg@5": 0.61234, "ndcg@10": 0.7,
                                                                           "recall@10": 0.9, "n_queries": 8}}}}}]}
    (tmp_path / "eval.json").write_text(json.dumps(eval_json))
    text = report.render(tmp_path)
    assert "Device: NVIDIA H200. Versions: torch 9.9. Date: 2030-01-02T03:04:05+0000." in text
    assert "| none | text | 0.612 | 0.700 |" in text and "type=heading" in text
    assert "`index.json` is missing" not in text and "**No results yet**" in text  # the other sections


def test_python_m_benchmarks_report(tmp_path):
    # Against a copy of benchmarks/ so the real RESULTS.md is never rewritten by a test.
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("stale\n")
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--report"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "benchmarks" / "RESULTS.md").read_text() == (ROOT / "benchmarks" / "RESULTS.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "benchmarks", "nope"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown benchmark(s) nope" in bad.stderr

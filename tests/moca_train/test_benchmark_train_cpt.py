"""benchmarks/train_cpt.py runs end to end at the tiny shape on CPU (the GPU numbers need a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cpt_benchmark_smoke_runs_both_modes(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import train_cpt

    out = tmp_path / "bench.json"
    assert train_cpt.main(["--smoke", "--warmup", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == {"docrag", "naive"}
    assert rows["docrag"]["attention"] == "sdpa" and rows["naive"]["attention"] == "eager"
    assert rows["naive"]["batching"].startswith("fixed") and rows["docrag"]["batching"].startswith("token budget")
    for r in rows.values():
        assert r["steps"] == 2 and r["tokens_per_s"] > 0 and r["tflops"] > 0 and 0 < r["mfu_pct"] < 100
    # Fixed batches padded to max_len waste more than length-bucketed token-budget batches.
    assert rows["naive"]["padding_pct"] > rows["docrag"]["padding_pct"]
    assert result["peak_flops"] == 790e12

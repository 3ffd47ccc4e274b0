"""benchmarks/train_contrastive.py runs end to end at the tiny shape on CPU (the GPU numbers need a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_contrastive_benchmark_smoke_runs_both_modes(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import train_contrastive

    out = tmp_path / "bench.json"
    assert train_contrastive.main(["--smoke", "--warmup", "0", "--steps", "1", "--pages", "4",
                                   "--no-checkpointing", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == {"plain", "gradcache"} and rows["gradcache"]["chunk"] == 2 and rows["plain"]["chunk"] == "-"
    for r in rows.values():
        assert r["steps"] == 1 and not r["oom"] and r["tokens_per_s"] > 0 and 0 < r["mfu_pct"] < 100
    # Same batches, same model: the two modes see the same tokens and compute the same loss.
    assert abs(rows["plain"]["loss_last"] - rows["gradcache"]["loss_last"]) < 1e-4 * abs(rows["plain"]["loss_last"])

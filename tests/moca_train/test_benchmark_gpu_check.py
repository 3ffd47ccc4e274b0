"""benchmarks/gpu_check.py --dry-run: the GPU check's own code on CPU at tiny shapes (the GPU numbers need a GPU).

Every part must end with numbers or a recorded reason for skipping it (flash-attention always skips on CPU; the
last parts may run out of the dry run's time on a loaded machine), every file must name the device, and nothing
may land in benchmarks/results."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = {"encode_sdpa", "precision", "flash_attn", "train_cpt", "train_contrastive", "index", "cpt_ablation"}


def _numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    return [float(value)] if isinstance(value, int | float) else []


def test_gpu_check_dry_run_records_every_part(tmp_path, monkeypatch, debian_pdf_dir):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import gpu_check
    from benchmarks.common import RESULTS

    before = {p: p.stat().st_mtime for p in RESULTS.glob("gpu-*.json")}
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path), "--pdfs", str(debian_pdf_dir)]) == 0
    assert {p: p.stat().st_mtime for p in RESULTS.glob("gpu-*.json")} == before

    summary = json.loads((tmp_path / "gpu-check.json").read_text())
    assert summary["finished"] and summary["dry_run"] and summary["device"].startswith("CPU")
    parts = summary["parts"]
    assert set(parts) == PARTS
    for name, entry in parts.items():
        if entry["status"] == "ok":
            assert _numbers(entry["numbers"]), name
        else:
            assert entry["status"] == "skipped" and entry["reason"], (name, entry)
    assert parts["flash_attn"]["status"] == "skipped" and "CUDA" in parts["flash_attn"]["reason"]
    # the first part always has the time: the encoder's numbers and the bf16-vs-float32 agreement
    assert parts["encode_sdpa"]["status"] == "ok" and parts["encode_sdpa"]["numbers"]["per_s"] > 0
    assert parts["precision"]["status"] == "ok" and parts["precision"]["numbers"]["pass"]
    for f in tmp_path.glob("gpu-*.json"):
        assert json.loads(f.read_text())["device"] == summary["device"], f.name


def test_ablation_is_sized_to_the_time_left(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import gpu_check

    assert gpu_check.ablation_steps(60) == 0
    assert gpu_check.ablation_steps(10_000) == 400
    mid = gpu_check.ablation_steps(200)
    assert 0 < mid < 400  # both variants' steps and their fixed costs fit the seconds given
    assert 2 * gpu_check.ABLATION_FIXED_S + 3 * mid * gpu_check.ABLATION_STEP_S <= 200

"""The CPU count that sizes the render workers: affinity, capped by a cgroup v2 quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexing.cpus import _cgroup_cpu_limit, available_cpus


def _own_cgroup() -> str:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        pytest.skip("no /proc/self/cgroup here")
    rel = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), None)
    if rel is None:
        pytest.skip("not a cgroup v2 system")
    return rel


@pytest.mark.parametrize(("cpu_max", "expected"), [("150000 100000\n", 2), ("100000 100000", 1),
                                                    ("max 100000", None), ("garbage", None)])
def test_a_cgroup_quota_caps_the_count(tmp_path: Path, cpu_max: str, expected: int | None):
    folder = tmp_path / _own_cgroup().lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cpu.max").write_text(cpu_max)
    assert _cgroup_cpu_limit(tmp_path) == expected


def test_no_cgroup_file_means_no_cap_and_the_count_is_positive(tmp_path: Path):
    assert _cgroup_cpu_limit(tmp_path) is None
    assert available_cpus() >= 1

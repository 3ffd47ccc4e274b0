"""`docrag` errors a user can cause: one line each (never wrapped, even for long paths with stderr a pipe), a
non-zero exit, and nothing created where nothing was asked for. Plus the cheap no-op (`--encoder auto` without
torch). Real CLI subprocesses, real PDFs, the real Qdrant Edge engine."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCRAG = [sys.executable, "-m", "app.cli"]


def docrag(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DOCRAG_DPI": "48", **(env or {})}
    full_env.pop("DOCRAG_ENCODER", None)
    return subprocess.run([*DOCRAG, *args], capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=300)


def _one_error_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The single `error: ...` line of stderr, holding every needle (i.e. not cut by a wrap)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def long_base(tmp_path_factory) -> Path:
    """A folder whose path is over 80 characters: what rich would wrap at when stderr is not a terminal."""
    base = tmp_path_factory.mktemp("cli-errors") / ("a-rather-long-folder-name-for-docrag-" * 3).rstrip("-")
    base.mkdir()
    assert len(str(base)) > 100
    return base


@pytest.fixture(scope="module")
def small_index(long_base) -> tuple[Path, Path]:
    docs = long_base / "docs"
    shutil.copytree(ROOT / "examples", docs, ignore=shutil.ignore_patterns("*.py"))
    idx = long_base / "idx"
    out = docrag("index", str(docs), "--index-dir", str(idx), "--encoder", "none")
    assert out.returncode == 0, out.stderr
    return docs, idx


@pytest.mark.parametrize("command", [["search", "anything"], ["status"], ["delete", "x.pdf"]])
def test_reading_a_folder_without_an_index_says_so_and_creates_nothing(long_base, command):
    missing = long_base / "typo-idx"
    empty = long_base / "empty-idx"
    empty.mkdir(exist_ok=True)
    for where in (missing, empty):
        out = docrag(*command, "--index-dir", str(where))
        assert out.returncode == 1
        _one_error_line(out, f"no index in {where}", "docrag index")
    assert not missing.exists() and list(empty.iterdir()) == []


def test_top_k_must_be_positive(small_index):
    _, idx = small_index
    for k in ("0", "-3"):
        out = docrag("search", "revenue", "--index-dir", str(idx), "-k", k)
        assert out.returncode == 2, (k, out.stdout)  # a usage error, not 5 hits or []
        assert "╭" not in out.stderr and "│" not in out.stderr  # no rich panel, wrapped at 80 columns
        (line,) = [x for x in out.stderr.splitlines() if x.startswith("Error:")]
        assert "--top-k" in line and "1" in line


def test_bad_encoder_folders_say_what_is_wrong(long_base):
    docs = long_base / "docs-enc"
    docs.mkdir(exist_ok=True)
    shutil.copy(ROOT / "examples" / "revenue-table.pdf", docs)
    nowhere = long_base / "no-such-encoder"
    out = docrag("index", str(docs), "--index-dir", str(long_base / "idx-enc"), "--encoder", str(nowhere))
    assert out.returncode == 1
    _one_error_line(out, f"encoder folder {nowhere} does not exist")
    out = docrag("index", str(docs), "--index-dir", str(long_base / "idx-enc"), "--encoder", str(docs))
    assert out.returncode == 1
    _one_error_line(out, f"encoder folder {docs} has no config.json")
    assert "repo id" not in out.stderr.lower()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_an_unreachable_qdrant_url_is_one_line_naming_it(small_index):
    docs, idx = small_index
    url = f"http://127.0.0.1:{_closed_port()}"
    out = docrag("index", str(docs), "--index-dir", str(idx), "--encoder", "none", "--qdrant-url", url)
    assert out.returncode == 1
    _one_error_line(out, f"cannot reach Qdrant at {url}")
    out = docrag("status", "--index-dir", str(idx), "--qdrant-url", url)
    assert out.returncode == 1
    _one_error_line(out, f"cannot reach Qdrant at {url}")


def test_long_paths_stay_on_one_line(small_index):
    docs, idx = small_index
    ghost = docs / "never-indexed-document-with-a-long-name.pdf"
    out = docrag("delete", str(ghost), "--index-dir", str(idx))
    assert out.returncode == 1
    _one_error_line(out, f"{ghost}: not in the index")
    (docs / "broken-document-with-a-long-name.pdf").write_text("not a pdf")
    out = docrag("index", str(docs), "--index-dir", str(idx), "--encoder", "none")
    (docs / "broken-document-with-a-long-name.pdf").unlink()
    failed = [line for line in out.stderr.splitlines() if line.startswith("failed ")]
    assert failed == [f"failed {docs / 'broken-document-with-a-long-name.pdf'}: not a PDF (file starts with "
                      "'not a pdf')"], out.stderr


NO_OP = """
import sys
sys.path.insert(0, sys.argv[1])
from app.cli import app
try:
    app(["index", sys.argv[2], "--index-dir", sys.argv[3], "--json"], prog_name="docrag")
except SystemExit as e:
    assert not e.code, e.code
print("TORCH" if "torch" in sys.modules else "NO-TORCH")
"""


def _assert_no_op_without_torch(docs: Path, idx: Path, env: dict) -> None:
    out = subprocess.run([sys.executable, "-c", NO_OP, str(ROOT), str(docs), str(idx)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "NO-TORCH", out.stdout
    summary = json.loads("\n".join(lines[:-1]))
    assert summary["unchanged"] == 3 and summary["pages_rendered"] == 0


def test_a_no_op_index_with_the_default_encoder_does_not_import_torch(small_index):
    docs, idx = small_index
    env = {k: v for k, v in os.environ.items() if k != "DOCRAG_ENCODER"}
    from app.encoders import _NVIDIA_MARKERS

    if any(os.path.exists(m) for m in _NVIDIA_MARKERS):  # a GPU machine: `auto` would rightly load a model
        env["CUDA_VISIBLE_DEVICES"] = ""
    _assert_no_op_without_torch(docs, idx, env)


@pytest.fixture(scope="module")
def encoded_index(long_base) -> tuple[Path, Path, Path]:
    from moca_train.presets import init_checkpoint

    enc = init_checkpoint("tiny", long_base / "tiny-enc", min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    docs = long_base / "docs-encoded"
    shutil.copytree(ROOT / "examples", docs, ignore=shutil.ignore_patterns("*.py"))
    idx = long_base / "idx-encoded"
    out = docrag("index", str(docs), "--index-dir", str(idx), "--encoder", str(enc))
    assert out.returncode == 0, out.stderr
    return docs, idx, enc


def test_a_no_op_index_built_with_an_encoder_does_not_load_it(encoded_index):
    # `--encoder auto` (the default) means the index's own encoder; with nothing to embed it is never loaded.
    docs, idx, _ = encoded_index
    env = {k: v for k, v in os.environ.items() if k != "DOCRAG_ENCODER"}
    _assert_no_op_without_torch(docs, idx, env)


def test_an_encoder_that_fails_to_load_stops_the_run_in_one_line(encoded_index, long_base):
    docs, _, enc = encoded_index
    broken = long_base / "broken-enc"
    shutil.copytree(enc, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    idx = long_base / "idx-broken"
    out = docrag("index", str(docs), "--index-dir", str(idx), "--encoder", str(broken))
    assert out.returncode == 1
    _one_error_line(out, "cannot load encoder", str(broken))
    assert "failed" not in out.stdout  # the run stopped: not one failure per file

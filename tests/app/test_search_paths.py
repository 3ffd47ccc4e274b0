"""Copies and renames: search hits and `doc=` filters always name a path that is in the manifest now (paths are
resolved from the manifest by content hash at query time). Real PDFs; both store backends (Qdrant Edge, and
qdrant-client's local mode standing in for a server)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.config import Config
from app.service import DocRag, hit_to_dict

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["edge", "qdrant-client"])
def rag(request, tmp_path):
    def make() -> DocRag:
        url = None if request.param == "edge" else f"file:{tmp_path / 'client-store'}"
        return DocRag(Config(index_dir=tmp_path / "idx", encoder="none", dpi=48, qdrant_url=url))

    return make


@pytest.fixture()
def docs(tmp_path) -> Path:
    d = tmp_path / "docs"
    shutil.copytree(ROOT / "examples", d, ignore=shutil.ignore_patterns("*.py"))
    return d


def _docs_of(hits) -> set[str]:
    return {h.doc_path for h in hits}


def test_a_renamed_file_is_found_under_its_new_name(rag, docs):
    rag().index([docs])
    old, new = docs / "solar-maintenance.pdf", docs / "inverter-handbook.pdf"
    old.rename(new)
    report = rag().index([docs], prune=True)
    assert report.removed == 1 and report.new == 1 and report.pages_rendered == 0  # pages shared, not redone
    hits = rag().search("deionised water at dawn", mode="text", top_k=3)
    assert hits[0].doc_path == str(new) and hits[0].doc_paths == [str(new)]
    assert all(Path(h.doc_path).exists() for h in hits)
    only = rag().search("deionised water", mode="text", doc="inverter-handbook")
    assert only and _docs_of(only) == {str(new)}
    assert rag().search("deionised water", mode="text", doc="solar-maintenance") == []


def test_copies_list_every_path_and_deleting_one_keeps_the_other(rag, docs):
    original = docs / "revenue-table.pdf"
    copy = docs / "sub" / "revenue-copy.pdf"
    copy.parent.mkdir()
    shutil.copy(original, copy)
    report = rag().index([docs])
    assert report.new == 4
    (hit,) = rag().search("East grew fastest", mode="text", top_k=1)
    assert sorted(hit.doc_paths) == sorted([str(original), str(copy)]) and hit.doc_path in hit.doc_paths
    assert hit_to_dict(hit, rag().config.index_dir)["docs"] == hit.doc_paths
    by_copy = rag().search("East grew fastest", mode="text", doc="revenue-copy")
    assert by_copy and by_copy[0].doc_hash == hit.doc_hash  # the copy's name finds the shared pages

    # Delete the path the pages were first stored under: hits now name the copy.
    first = hit.doc_path
    other = next(p for p in hit.doc_paths if p != first)
    Path(first).unlink()
    assert rag().delete(first) == 0  # pages shared with the other path stay
    (after,) = rag().search("East grew fastest", mode="text", top_k=1)
    assert after.doc_path == other and after.doc_paths == [other]
    assert rag().search("East grew fastest", mode="text", doc=Path(first).stem) == []

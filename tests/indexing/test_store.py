"""The store contract, run against both backends: Qdrant Edge (in tmp_path) and qdrant-client's local mode."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexing.bm25 import Bm25Encoder, Sparse, embed_document, embed_query
from indexing.store import (
    SCHEMA_FILE,
    DimensionMismatch,
    EdgeStore,
    PagePoint,
    QdrantClientStore,
    Store,
    StoreError,
    locked_store,
    open_store,
    point_id,
)

DIM = 16
FILLER = (
    "report summary table figure section analysis results method data value total annual budget region "
    "market growth customer service product quality policy review meeting project plan schedule risk"
).split()
BACKENDS = ["edge", "client-memory", "client-path"]


def filler_text(rng: np.random.Generator, n: int = 40) -> str:
    return " ".join(rng.choice(FILLER, n))


def unit(rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def page(doc: str, n: int, *, text: str = "", visual: np.ndarray | None = None, folder: str = "/docs") -> PagePoint:
    return PagePoint(
        doc_hash=f"hash-{doc}",
        doc_path=f"{folder}/{doc}.pdf",
        page=n,
        image_path=f"/idx/pages/{doc}/{n:04d}.png",
        text=text,
        title=f"Title of {doc}",
        visual=visual,
    )


StoreFactory = Callable[..., Store]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_store(backend: str, tmp_path: Path) -> Any:
    """make_store(dim=...) opens (or reopens) this test's store; every store opened is closed at the end."""
    opened: list[Store] = []
    memory: dict[str, Store] = {}

    def make(dim: int | None = DIM, **kw: Any) -> Store:
        if backend == "edge":
            s: Store = EdgeStore(tmp_path / "qdrant", dim, **kw)
        elif backend == "client-path":
            s = QdrantClientStore(path=str(tmp_path / "qdrant-local"), dim=dim, **kw)
        else:  # one in-memory client per test; "reopening" returns the same live store
            if "s" not in memory or memory["s"].closed:
                memory["s"] = QdrantClientStore(location=":memory:", dim=dim, **kw)
            s = memory["s"]
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


class Spy:
    """Wraps a backend object and records the names of the methods called on it."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def wrapped(*a: Any, **k: Any) -> Any:
            self.calls.append(name)
            return attr(*a, **k)

        return wrapped


def spy_backend(store: Store) -> Spy:
    if isinstance(store, EdgeStore):
        spy = Spy(store._shard)
        store._shard = spy
    else:
        spy = Spy(store._client)
        store._client = spy
    return spy


# ------------------------------------------------------------------ BM25


def test_bm25_empty_text_gives_empty_vector() -> None:
    for text in ("", "   \n\t"):
        assert embed_document(text).is_empty and embed_query(text).is_empty
    assert len(embed_document("the and of")) == 0  # stop words only


def test_bm25_stems_and_drops_stop_words() -> None:
    doc = embed_document("The dogs were running quickly")
    query = embed_query("dog run")
    assert set(query.indices) <= set(doc.indices)
    assert all(v == 1.0 for v in query.values)
    assert len(embed_query("the dog")) == 1


def test_bm25_language_is_configurable() -> None:
    de = Bm25Encoder("german")
    assert set(de.embed_query("Hund").indices) <= set(de.embed_document("Die Hunde laufen").indices)
    with pytest.raises(ValueError):
        Bm25Encoder("klingon")
    with pytest.raises(ValueError):
        Sparse([1, 2], [1.0])


# ------------------------------------------------------------------ the store contract


def test_upsert_count_and_payload(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(0)
    s = make_store()
    pts = [page("a", n, text=f"alpha page {n} " + filler_text(rng), visual=unit(rng)) for n in (1, 2, 3)]
    s.upsert(pts)
    assert s.count() == 3 and s.count_with_visual() == 3 and s.dim == DIM
    hit = s.query(vector=pts[1].visual, mode="visual", top_k=1)[0]
    assert (hit.doc_hash, hit.doc_path, hit.page) == ("hash-a", "/docs/a.pdf", 2)
    assert hit.image_path == "/idx/pages/a/0002.png" and hit.title == "Title of a" and hit.text == pts[1].text
    assert hit.score == pytest.approx(1.0, abs=1e-4)


def test_reupsert_overwrites_and_never_duplicates(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(1)
    s = make_store()
    s.upsert([page("a", n, text="first version", visual=unit(rng)) for n in (1, 2)])
    s.upsert([page("a", 2, text="second version zeppelin", visual=unit(rng))])
    assert s.count() == 2
    assert point_id("hash-a", 2) == page("a", 2).id
    hits = s.query(text="zeppelin", mode="text")
    assert [(h.page, h.text) for h in hits] == [(2, "second version zeppelin")]


def test_delete_document_removes_exactly_that_document(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(2)
    s = make_store()
    s.upsert([page(d, n, text=filler_text(rng), visual=unit(rng)) for d in ("a", "b", "c") for n in range(1, 5)])
    assert s.delete_document("hash-b") == 4
    assert s.delete_document("hash-b") == 0
    assert s.document_page_counts() == {"hash-a": 4, "hash-c": 4}
    assert s.delete_where_path("/docs/c.pdf") == 4
    assert s.document_page_counts() == {"hash-a": 4}
    assert s.count() == 4


def test_text_search_finds_distinctive_phrase_among_many(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(3)
    s = make_store()
    pts = [page(f"d{i // 10}", i % 10 + 1, text=filler_text(rng), visual=unit(rng)) for i in range(150)]
    pts[77].text = filler_text(rng, 20) + " the chloroplast thylakoid membranes " + filler_text(rng, 20)
    s.upsert(pts)
    hits = s.query(text="thylakoid membrane", mode="text", top_k=3)  # stemmed: membrane ~ membranes
    assert (hits[0].doc_hash, hits[0].page) == (pts[77].doc_hash, pts[77].page)
    assert s.query(text="the of and", mode="text") == []  # only stop words


def test_visual_search_returns_nearest_first(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(4)
    s = make_store()
    pts = [page("v", n, text=filler_text(rng), visual=unit(rng)) for n in range(1, 101)]
    s.upsert(pts)
    target = pts[41]
    q = target.visual + 0.05 * unit(rng)
    hits = s.query(vector=q, mode="visual", top_k=5)
    assert hits[0].page == target.page
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_fuses_text_only_and_vector_only_matches_in_one_query(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(5)
    s = make_store()
    q = unit(rng)
    pts = [page(f"h{i // 10}", i % 10 + 1, text=filler_text(rng), visual=unit(rng)) for i in range(120)]
    text_only, vec_only = pts[10], pts[90]
    text_only.text = filler_text(rng, 20) + " quarterly zeppelin maintenance ledger"
    text_only.visual = -q  # as far from the query vector as can be
    vec_only.visual = q + 0.01 * unit(rng)  # the nearest vector, but none of the query words
    s.upsert(pts)
    spy = spy_backend(s)
    hits = s.query(text="zeppelin maintenance ledger", vector=q, mode="hybrid", top_k=5, prefetch_k=20)
    keys = [(h.doc_hash, h.page) for h in hits]
    assert (text_only.doc_hash, text_only.page) in keys[:2]
    assert (vec_only.doc_hash, vec_only.page) in keys[:2]
    assert spy.calls == (["query"] if isinstance(s, EdgeStore) else ["query_points"])
    assert all(h.score < 0.05 for h in hits)  # RRF scores (1/(k+rank) sums), not cosine/BM25


def test_doc_filter_restricts_results(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(6)
    s = make_store()
    pts = [page("alpha", n, text="common words " + filler_text(rng), visual=unit(rng), folder="/x") for n in (1, 2)]
    pts += [page("beta", n, text="common words " + filler_text(rng), visual=unit(rng), folder="/y") for n in (1, 2)]
    s.upsert(pts)
    q = pts[2].visual
    for flt in ("/x/alpha.pdf", "alpha.pdf", "/x/", "hash-alpha"):
        for mode in ("text", "visual", "hybrid"):
            hits = s.query(text="common words", vector=q, mode=mode, top_k=10, doc_filter=flt)
            assert hits and {h.doc_hash for h in hits} == {"hash-alpha"}, (flt, mode)
    assert s.query(text="common", mode="text", doc_filter="nope") == []


def test_doc_hashes_restrict_results_whatever_the_stored_path(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(16)
    s = make_store()
    pts = [page(d, n, text="shared words " + filler_text(rng), visual=unit(rng)) for d in "abc" for n in (1, 2)]
    s.upsert(pts)
    for mode in ("text", "visual", "hybrid"):
        hits = s.query(text="shared words", vector=pts[0].visual, mode=mode, top_k=10, doc_hashes=["hash-b", "hash-c"])
        assert len(hits) == 4 and {h.doc_hash for h in hits} == {"hash-b", "hash-c"}, mode
    assert s.query(text="shared words", mode="text", doc_hashes=[]) == []  # a filter that matched nothing
    assert len(s.query(text="shared words", mode="text", top_k=10)) == 6


def test_set_visual_fills_pages_indexed_without_vectors(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(7)
    s = make_store()
    pts = [page("t", n, text=f"page {n} " + filler_text(rng)) for n in range(1, 6)]
    pts.append(page("u", 1, text="other document"))
    s.upsert(pts)
    assert s.count_with_visual() == 0
    assert s.pages_missing_visual() == sorted((p.doc_hash, p.page, p.image_path) for p in pts)
    before = {h.page: h for h in s.query(text="page", mode="text", top_k=10, doc_filter="hash-t")}

    vecs = {n: unit(rng) for n in (2, 4)}
    s.set_visual("hash-t", vecs)
    assert s.count_with_visual() == 2 and s.count() == 6
    missing = s.pages_missing_visual()
    assert ("hash-t", 2, pts[1].image_path) not in missing and len(missing) == 4
    two = s.pages_missing_visual(limit=2)
    assert len(two) == 2 and set(two) <= set(missing)
    assert [p for _, p, _ in s.pages_missing_visual(doc_hash="hash-t")] == [1, 3, 5]

    after = {h.page: h for h in s.query(text="page", mode="text", top_k=10, doc_filter="hash-t")}
    for n, h in after.items():  # payload and sparse vector untouched: same text hits, same BM25 scores
        b = before[n]
        assert (h.text, h.title, h.image_path, h.doc_path) == (b.text, b.title, b.image_path, b.doc_path)
        assert h.score == pytest.approx(b.score, rel=1e-5)
    assert s.query(vector=vecs[4], mode="visual", top_k=1)[0].page == 4

    with pytest.raises(KeyError, match=r"\[9\]"):
        s.set_visual("hash-t", {1: unit(rng), 9: unit(rng)})
    assert s.count_with_visual() == 2  # nothing written on error


def test_text_only_index_takes_its_dim_from_the_first_vector(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(8)
    s = make_store(dim=None)
    s.upsert([page("a", 1, text="no encoder yet")])
    assert s.dim is None and s.count_with_visual() == 0
    assert [p for _, p, _ in s.pages_missing_visual()] == [1]
    with pytest.raises(StoreError, match="no visual vectors"):
        s.query(vector=unit(rng), mode="visual")
    s.set_visual("hash-a", {1: unit(rng, 24)})
    assert s.dim == 24 and s.count_with_visual() == 1 and s.pages_missing_visual() == []
    with pytest.raises(DimensionMismatch, match="index was built with dim 24, encoder gives 16"):
        s.upsert([page("b", 1, visual=unit(rng, 16))])


def test_dim_mismatch_is_a_clear_error(make_store: StoreFactory, backend: str) -> None:
    rng = np.random.default_rng(9)
    s = make_store(dim=8)
    s.upsert([page("a", 1, text="x", visual=unit(rng, 8))])
    with pytest.raises(DimensionMismatch, match="index was built with dim 8, encoder gives 16"):
        s.upsert([page("a", 2, visual=unit(rng, 16))])
    with pytest.raises(DimensionMismatch, match="index was built with dim 8, encoder gives 4"):
        s.query(vector=unit(rng, 4), mode="visual")
    with pytest.raises(DimensionMismatch, match="index was built with dim 8, encoder gives 12"):
        s.set_visual("hash-a", {1: unit(rng, 12)})
    if backend != "client-memory":
        s.close()
        with pytest.raises(DimensionMismatch, match="index was built with dim 8, encoder gives 2048"):
            make_store(dim=2048)
        assert make_store(dim=8).count() == 1  # the failed open released the index


def test_empty_text_page_is_stored_without_sparse_vector(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(10)
    s = make_store()
    v = unit(rng)
    s.upsert([page("blank", 1, text="", visual=v), page("words", 1, text="words here", visual=unit(rng))])
    s.upsert([PagePoint("hash-z", "/z.pdf", 1, text="", sparse=Sparse())])  # explicit empty sparse, no vector
    assert s.count() == 3
    assert {h.doc_hash for h in s.query(text="words", mode="text", top_k=10)} == {"hash-words"}
    assert s.query(vector=v, mode="visual", top_k=1)[0].doc_hash == "hash-blank"
    assert s.query(text="the", vector=v, mode="hybrid", top_k=1)[0].doc_hash == "hash-blank"


def test_query_argument_errors(make_store: StoreFactory) -> None:
    s = make_store()
    with pytest.raises(ValueError, match="needs a query vector"):
        s.query(text="x", mode="hybrid")
    with pytest.raises(ValueError, match="needs a query text"):
        s.query(vector=np.ones(DIM), mode="text")
    with pytest.raises(ValueError, match="mode must be"):
        s.query(text="x", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-based"):
        s.upsert([page("a", 0)])
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.count()
    s.close()  # idempotent


@pytest.mark.parametrize("backend", ["edge", "client-path"], indirect=True)  # memory mode has nothing to persist
def test_persistence_close_and_reopen(make_store: StoreFactory, backend: str) -> None:
    rng = np.random.default_rng(11)
    with make_store(dim=DIM) as s:
        pts = [page("p", n, text=f"persist {n} " + filler_text(rng), visual=unit(rng)) for n in range(1, 21)]
        pts.append(page("p", 21, text="unique narwhal"))
        s.upsert(pts)
        s.optimize()
        assert s.bytes_on_disk() > 0
    with make_store(dim=None) as s:  # dim comes from the stored schema
        assert s.dim == DIM and s.count() == 21 and s.count_with_visual() == 20
        assert s.query(vector=pts[4].visual, mode="visual", top_k=1)[0].page == 5
        assert s.query(text="narwhal", mode="text", top_k=1)[0].page == 21
        assert s.document_page_counts() == {"hash-p": 21}


def test_edge_schema_file_and_language_guard(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "q", 8, language="german") as s:
        s.upsert([PagePoint("h", "/d.pdf", 1, text="Die Hunde laufen schnell")])
        assert s.query(text="Hund", mode="text")[0].page == 1
    schema = json.loads((tmp_path / "q" / SCHEMA_FILE).read_text())
    assert schema["dim"] == 8 and schema["bm25_language"] == "german" and schema["schema_version"] == 1
    assert schema["dense_index"] == "exact"
    with EdgeStore(tmp_path / "q") as s:
        assert s.language == "german" and s.dim == 8
    with pytest.raises(StoreError, match="BM25 language 'german'"):
        EdgeStore(tmp_path / "q", language="english")
    EdgeStore(tmp_path / "q").close()  # the failed open above left the shard free


def test_open_store_factory_and_locked_store(tmp_path: Path) -> None:
    with open_store(tmp_path, 8) as s:
        assert isinstance(s, EdgeStore) and s.path == tmp_path / "qdrant"
        s.upsert([PagePoint("h", "/d.pdf", 1, text="hello")])
    with open_store(tmp_path, None, qdrant_url=":memory:", collection="scratch") as s:
        assert isinstance(s, QdrantClientStore) and s.collection == "scratch" and s.count() == 0
    with locked_store(tmp_path, None, command="docrag search") as s:
        assert s.count() == 1 and s.dim == 8
        assert json.loads((tmp_path / ".lock.info").read_text())["command"] == "docrag search"
    assert not (tmp_path / ".lock.info").exists()


def test_edge_hnsw_option_builds_a_graph_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    with EdgeStore(tmp_path / "h", DIM, hnsw=True) as s:
        pts = [page("g", n, text=filler_text(rng), visual=unit(rng)) for n in range(1, 201)]
        s.upsert(pts)
        s.optimize()
        assert s.query(vector=pts[7].visual, mode="visual", top_k=1)[0].page == 8
    assert json.loads((tmp_path / "h" / SCHEMA_FILE).read_text())["dense_index"] == "hnsw"


def test_an_unreachable_server_leaves_no_warning_behind():
    # qdrant-client's version check runs in a daemon thread and, on a dead server, prints a UserWarning
    # whenever it wins the race with the process's exit: docrag's one-line error must be the only output.
    import socket
    import time
    import warnings

    from indexing.store import QdrantClientStore, StoreError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            QdrantClientStore(url=f"http://127.0.0.1:{port}", dim=4).close()
        except StoreError:
            pass
        time.sleep(1.0)
    assert [str(w.message) for w in caught if "server version" in str(w.message)] == []

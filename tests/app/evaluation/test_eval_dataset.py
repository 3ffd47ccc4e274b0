"""Reading evaluation sets: BEIR/ViDoRe-v2 (image and PDF-page rows), ViDoRe-v1 QA, saved HF datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.evaluation.dataset import DatasetError, load_dataset


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def beir(tmp_path, debian_pdfs) -> Path:
    from PIL import Image

    ds = tmp_path / "set"
    (ds / "docs").mkdir(parents=True)
    (ds / "img").mkdir()
    shutil.copy(debian_pdfs["sample-plain.pdf"], ds / "docs" / "exam.pdf")
    Image.new("RGB", (40, 60), "white").save(ds / "img" / "scan.png")
    _jsonl(ds / "corpus.jsonl", [{"_id": "exam-1", "pdf": "docs/exam.pdf", "page": 1},
                                 {"_id": "exam-2", "pdf": "docs/exam.pdf", "page": 2},
                                 {"_id": "scan", "image": "img/scan.png"}])
    _jsonl(ds / "queries.jsonl", [{"_id": "q1", "text": "capital of Egypt", "type": "heading", "language": "en"},
                                  {"_id": "q2", "text": "a scanned page", "type": "caption", "n": 3}])
    (ds / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\texam-1\t2\nq1\texam-2\t1\nq2\tscan\t1\n")
    return ds


def test_beir_layout_both_row_kinds(beir):
    ds = load_dataset(beir)
    rows = {r.id: r for r in ds.corpus}
    assert rows["exam-2"].kind == "pdf" and rows["exam-2"].page == 2 and rows["exam-2"].path.is_absolute()
    assert rows["scan"].kind == "image" and rows["scan"].page == 1 and rows["scan"].path.name == "scan.png"
    assert ds.qrels == {"q1": {"exam-1": 2, "exam-2": 1}, "q2": {"scan": 1}}
    # Extra string fields name subsets; a number does not.
    assert ds.subsets() == {"type=heading": ["q1"], "language=en": ["q1"], "type=caption": ["q2"]}


def test_beir_qrels_in_a_subfolder(beir):
    (beir / "qrels").mkdir()
    (beir / "qrels.tsv").rename(beir / "qrels" / "test.tsv")
    assert load_dataset(beir).qrels["q2"] == {"scan": 1}


@pytest.mark.parametrize("damage, reason", [
    (lambda d: (d / "img" / "scan.png").unlink(), "corpus.jsonl: line 3: .*scan.png does not exist"),
    (lambda d: (d / "corpus.jsonl").write_text('{"_id": "x", "pdf": "docs/exam.pdf", "page": 0}\n'),
     "corpus.jsonl: line 1: \"page\" must be a page number"),
    (lambda d: (d / "queries.jsonl").write_text("{not json\n"), "queries.jsonl: line 1: not JSON"),
    (lambda d: (d / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnope\t1\n"),
     "qrels.tsv: corpus id 'nope'"),
    (lambda d: (d / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\texam-1\tbig\n"),
     "qrels.tsv: line 2: expected"),
    (lambda d: (d / "queries.jsonl").unlink(), "queries.jsonl: missing"),
])
def test_bad_sets_fail_with_one_line_naming_the_file(beir, damage, reason):
    damage(beir)
    with pytest.raises(DatasetError, match=reason) as e:
        load_dataset(beir)
    assert "\n" not in str(e.value)


def test_vidore_v1_qa_layout(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (30, 30), "white").save(tmp_path / "img" / f"{name}.png")
    _jsonl(tmp_path / "test.jsonl", [{"query": "first question", "image": "img/a.png", "language": "fr"},
                                     {"query": "second question", "image": "img/a.png"},
                                     {"query": None, "image": "img/b.png"}])  # a page without a question
    ds = load_dataset(tmp_path)
    assert ds.layout == "vidore-v1" and len(ds.corpus) == 2 and len(ds.queries) == 2
    page_a = next(r.id for r in ds.corpus if r.path.name == "a.png")
    assert all(ds.qrels[q.id] == {page_a: 1} for q in ds.queries)
    assert ds.subsets() == {"language=fr": [ds.queries[0].id]}


def test_saved_hf_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    images = [Image.new("RGB", (32, 32), c) for c in ("white", "red")]
    v2 = datasets.DatasetDict({
        "corpus": datasets.Dataset.from_dict({"corpus-id": [10, 11], "image": images}).cast_column(
            "image", datasets.Image()),
        "queries": datasets.Dataset.from_dict({"query-id": [1], "query": ["red page"], "language": ["en"]}),
        "qrels": datasets.Dataset.from_dict({"query-id": [1], "corpus-id": [11], "score": [2]}),
    })
    v2.save_to_disk(str(tmp_path / "v2"))
    ds = load_dataset(tmp_path / "v2", image_dir=tmp_path / "images")
    assert ds.layout == "hf-vidore-v2" and ds.qrels == {"1": {"11": 2}}
    assert [r.id for r in ds.corpus] == ["10", "11"] and all(r.path.is_file() for r in ds.corpus)
    assert ds.subsets() == {"language=en": ["1"]}
    again = load_dataset(tmp_path / "v2", image_dir=tmp_path / "images")  # images written once, re-used
    assert [r.path for r in again.corpus] == [r.path for r in ds.corpus]

    v1 = datasets.Dataset.from_dict({"query": ["q one", "q two"], "image": images,
                                     "image_filename": ["a.png", "b.png"]}).cast_column("image", datasets.Image())
    v1.save_to_disk(str(tmp_path / "v1"))
    ds = load_dataset(tmp_path / "v1", image_dir=tmp_path / "images")
    assert ds.layout == "hf-vidore-v1" and len(ds.corpus) == 2 and ds.qrels == {"q1": {"p1": 1}, "q2": {"p2": 1}}

"""`docrag eval calibrate`: fusion settings tuned on half of a set's queries, checked on the other half, written to the
index's docrag.toml; a source that does not help gets weight 0 (and stays in the index); a setting that loses on the
held-out half is never taken. Real Debian pages, real Qdrant Edge, a tiny untrained MoCa encoder (noise: the
source calibration must switch off) and a tiny random sentence-transformers model."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pymupdf
import pytest
from typer.testing import CliRunner

from app.cli import app
from app.config import Config, load_config
from app.evaluation.build import build_eval_set
from app.evaluation.calibrate import Calibrator, rrf_scores, split_queries
from app.evaluation.dataset import load_dataset
from app.evaluation.runner import EvalRunner
from app.service import DocRag

PIXELS = {"min_pixels": 16 * 28 * 28, "max_pixels": 64 * 28 * 28}


@pytest.fixture(scope="module")
def world(tmp_path_factory, debian_pdfs):
    """24 real manual pages, an eval set of queries from them, the user's index of those pages."""
    from moca_train.presets import init_checkpoint

    root = tmp_path_factory.mktemp("cal")
    docs = root / "docs"
    docs.mkdir()
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as src, pymupdf.open() as out:
        out.insert_pdf(src, from_page=10, to_page=33)
        out.save(docs / "amc.pdf")
    build_eval_set([docs], root / "set", split=1.0, seed=0)
    encoder = init_checkpoint("tiny", root / "tiny", **PIXELS)
    index = root / "idx"
    DocRag(Config(index_dir=index, dpi=36, encoder=str(encoder), text_encoder="none")).index([docs])
    return {"root": root, "docs": docs, "set": root / "set", "encoder": encoder, "index": index}


def _config(world, **kw) -> Config:
    return Config(index_dir=world["index"], dpi=36, encoder=str(world["encoder"]), text_encoder="none", **kw)


def test_halves_are_disjoint_seeded_and_cover_every_query() -> None:
    ids = [f"q{i:02d}" for i in range(21)]
    tune, held = split_queries(ids, seed=3)
    assert sorted(tune + held) == ids and not set(tune) & set(held) and len(tune) == 11
    assert split_queries(list(reversed(ids)), seed=3) == (tune, held)
    assert split_queries(ids, seed=4) != (tune, held)


def test_the_python_fusion_is_the_engines(world, tmp_path) -> None:
    from app.textenc import init_tiny_text_encoder

    with pymupdf.open(world["docs"] / "amc.pdf") as doc:
        st = init_tiny_text_encoder(tmp_path / "st", [p.get_text() for p in doc])
    ds = load_dataset(world["set"])
    cfg = Config(index_dir=tmp_path / "idx", dpi=36, encoder=str(world["encoder"]), text_encoder=str(st))
    first = EvalRunner(ds, cfg).run(["text", "dense", "visual"], 100, str(world["encoder"]))
    page_of = {row.id: row.page for row in ds.corpus}
    for k, wt, wd, wv in ((1, 1.0, 1.0, 1.0), (10, 0.0, 2.0, 0.5), (60, 1.0, 0.25, 4.0)):
        svc = DocRag(dataclasses.replace(cfg, index_dir=Path(first.index_dir), rrf_k=k, weight_text=wt,
                                         weight_dense=wd, weight_visual=wv))
        for q in ds.queries:
            # The engine's fused scores (float32) are the formula's, page for page; rankings may differ only where
            # two pages' scores tie to float32 precision.
            want = rrf_scores([first.modes[s].ranking[q.id] for s in ("text", "dense", "visual")], k, [wt, wd, wv])
            got = {h.page: h.score for h in svc.search(q.text, top_k=24, mode="hybrid")}
            assert set(got) == {page_of[c] for c in want}, (k, q.id)
            for cid, score in want.items():
                assert abs(got[page_of[cid]] - score) <= 1e-6 * max(1.0, score), (k, q.id, cid)


def test_a_source_that_does_not_help_gets_weight_zero_and_stays(world) -> None:
    ds = load_dataset(world["set"])
    cal = Calibrator(ds, _config(world), encoder=str(world["encoder"])).run()
    assert cal.sources == ["text", "visual"]
    assert cal.after.weights["visual"] == 0 and cal.zeroed == ["visual"]
    assert any(n.startswith("visual: weight 0") and "stay in the index" in n for n in cal.notes())
    rows = {r["setting"].split(":")[0]: r for r in cal.rows}
    assert rows["hybrid tuned"]["held_out"] >= rows["hybrid before"]["held_out"]  # never worse held out
    assert DocRag(_config(world)).status()["pages_with_visual"] == 24


def test_a_setting_that_loses_on_the_held_out_half_is_not_taken(world) -> None:
    """Relevance labels that make the halves disagree: on the tuning half each query's relevant page is the one the
    untrained encoder ranks first (and BM25 does not rank near the top), on the held-out half the one BM25 ranks
    first (and the encoder near the bottom). Tuning then weights the noise up; the held-out half must refuse it."""
    ds = load_dataset(world["set"])
    first = EvalRunner(ds, _config(world)).run(["text", "visual"], 100, str(world["encoder"]))
    text, visual = first.modes["text"].ranking, first.modes["visual"].ranking
    for_tune = [(q, visual[q][0]) for q in text if visual[q][0] not in text[q][:3]]
    for_held = [(q, text[q][0]) for q in text if text[q] and text[q][0] in visual[q][12:]]
    n = min(len(for_tune), len(for_held), 6)
    assert n >= 3, (len(for_tune), len(for_held))
    tune, held = split_queries([f"q{i:03d}" for i in range(2 * n)])
    rows_ = dict(zip(tune[:n], for_tune, strict=False)) | dict(zip(held[:n], for_held, strict=False))
    texts = {q.id: q.text for q in ds.queries}
    rigged = world["root"] / "rigged"  # beside the set: its corpus rows name ../docs/amc.pdf
    rigged.mkdir(exist_ok=True)
    (rigged / "corpus.jsonl").write_text((world["set"] / "corpus.jsonl").read_text())
    (rigged / "queries.jsonl").write_text("".join(json.dumps({"_id": qid, "text": texts[src]}) + "\n"
                                                  for qid, (src, _) in sorted(rows_.items())))
    (rigged / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{qid}\t{page}\t2\n" for qid, (_, page) in sorted(rows_.items())))
    cal = Calibrator(load_dataset(rigged), _config(world), encoder=str(world["encoder"])).run()
    rows = {r["setting"].split(":")[0]: r for r in cal.rows}
    assert cal.tuned.weights["visual"] > 0 and rows["hybrid tuned"]["tune"] > rows["hybrid before"]["tune"]
    assert rows["hybrid tuned"]["held_out"] < rows["hybrid before"]["held_out"]
    assert cal.kept_before and cal.after == cal.before
    assert "scored below the current one on the held-out half" in cal.notes()[0]


def test_cli_writes_the_index_docrag_toml_once(world) -> None:
    runner = CliRunner()
    index = world["index"]
    (index / "docrag.toml").write_text("# my settings\ntop_k = 7\n")
    dry = runner.invoke(app, ["eval", "calibrate", str(world["set"]), "--index-dir", str(index), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would write" in dry.output and (index / "docrag.toml").read_text() == "# my settings\ntop_k = 7\n"
    res = runner.invoke(app, ["eval", "calibrate", str(world["set"]), "--index-dir", str(index)])
    assert res.exit_code == 0, res.output
    assert "hybrid before" in res.output and "hybrid tuned" in res.output and "wrote" in res.output
    written = tomllib.loads((index / "docrag.toml").read_text())
    assert written["top_k"] == 7 and written["weight_visual"] == 0.0  # the user's own lines kept
    assert "# my settings" in (index / "docrag.toml").read_text()
    assert DocRag(load_config({"index_dir": index})).fusion_weights()["visual"] == 0.0
    again = runner.invoke(app, ["eval", "calibrate", str(world["set"]), "--index-dir", str(index), "--json"])
    assert again.exit_code == 0 and json.loads(again.output)["written"] is None  # nothing better to write
    missing = runner.invoke(app, ["eval", "calibrate", str(world["root"] / "nope"), "--index-dir", str(index)])
    assert missing.exit_code == 1 and len(missing.output.strip().splitlines()) == 1


def test_bm25_alone_has_nothing_to_calibrate(world, tmp_path) -> None:
    ds = load_dataset(world["set"])
    with pytest.raises(ValueError, match="nothing to calibrate"):
        Calibrator(ds, Config(index_dir=tmp_path / "t", dpi=36, encoder="none", text_encoder="none"),
                   encoder="none").run()


def test_pipeline_weight_goes_with_the_encoder(world, tmp_path) -> None:
    """A `fusion.weight_visual` beside a checkpoint is what search uses for an index built with it (unless set)."""
    import shutil

    enc = tmp_path / "enc"
    shutil.copytree(world["encoder"], enc)
    notes = json.loads((enc / "docrag_encoder.json").read_text())
    notes.pop("untrained")
    notes["fusion"] = {"weight_visual": 0.25}
    (enc / "docrag_encoder.json").write_text(json.dumps(notes))
    index = tmp_path / "idx"
    DocRag(Config(index_dir=index, dpi=36, encoder=str(enc), text_encoder="none")).index([world["docs"]])
    assert DocRag(Config(index_dir=index, encoder="auto", text_encoder="none")).fusion_weights()["visual"] == 0.25
    assert DocRag(Config(index_dir=index, encoder="auto", text_encoder="none",
                         weight_visual=2.0)).fusion_weights()["visual"] == 2.0
    assert Path(index / "manifest.sqlite").is_file()


"""A docrag encoder folder (what `docrag train` writes) as the dense text model: `--text-encoder FOLDER` loads it,
embeds page texts as MoCa's text-text pairs train them (raw text, cut to the contrastive stage's 512 tokens),
and dense search over a real PDF index finds the page a query was written from."""

from __future__ import annotations

from pathlib import Path

import badfiles
import numpy as np
import pytest

from app.config import Config
from app.service import DocRag
from app.textenc import MoCaTextEncoder, TextEncoderUnavailable, load_text_encoder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    from moca_train.presets import init_checkpoint

    return init_checkpoint("tiny", tmp_path_factory.mktemp("enc") / "tiny")


def test_a_docrag_encoder_folder_is_a_text_encoder(encoder_dir) -> None:
    enc = load_text_encoder(str(encoder_dir))
    assert isinstance(enc, MoCaTextEncoder) and enc.dim == 64 and enc.name == str(encoder_dir)
    texts = ["Scanning the answer sheets", "Compiling the LaTeX source"]
    docs, queries = enc.encode_texts(texts), enc.encode_queries(texts)
    assert docs.shape == (2, 64) and np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-5)
    assert np.abs(docs - queries).max() < 1e-5  # both sides raw text, no prompt
    # A long page is its first max_tokens tokens.
    enc.max_tokens = 8
    long = " ".join(["answer sheets"] * 40)
    cut = enc.encoder.processor.tokenizer.decode(enc.encoder.processor.tokenizer(long)["input_ids"][:8])
    assert np.abs(enc.encode_texts([long]) - enc.encode_queries([cut])).max() < 1e-5
    assert enc.encode_texts([]).shape == (0, 64)


def test_a_folder_that_is_no_encoder_is_one_line(tmp_path) -> None:
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "docrag_encoder.json").write_text("{}")
    with pytest.raises(TextEncoderUnavailable, match="cannot load text encoder .*broken"):
        MoCaTextEncoder(str(bad))


def test_dense_search_with_the_encoder_as_text_model(encoder_dir, tmp_path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    pages = ["Scanning the answer sheets of the students", "Compiling the LaTeX source of the subject",
             "Annotating the corrected copies before sending them"]
    badfiles.text_pdf(docs / "short.pdf", pages)
    svc = DocRag(Config(index_dir=tmp_path / "idx", dpi=48, encoder="none", text_encoder=str(encoder_dir)))
    svc.index([docs])
    assert "dense" in svc.available_modes()
    hits = svc.search(pages[1], mode="dense", top_k=3)
    assert hits[0].page == 2 and hits[0].score == pytest.approx(1.0, abs=1e-4)  # the page's own text

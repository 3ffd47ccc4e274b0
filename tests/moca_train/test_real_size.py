"""The real 3B path in CI-sized form: Qwen2.5-VL-3B's widths, vocabulary and processor with 2 layers (LLM and
vision), in bf16 on CPU: save, load strictly, index a real Debian page, the pooling path, the released
checkpoints' legacy layout. Minutes and ~6 GB: runs only with DOCRAG_SLOW=1 (`DOCRAG_SLOW=1 make test`)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(os.environ.get("DOCRAG_SLOW") != "1",
                                reason="the 3B shape (minutes, ~6 GB): set DOCRAG_SLOW=1")


def test_the_3b_shape_in_bf16_indexes_a_real_page_and_round_trips_the_legacy_layout(tmp_path, debian_pdfs,
                                                                                     legacy_copy):
    import pymupdf
    from PIL import Image

    from app.config import Config
    from app.service import DocRag
    from moca_train.modeling import MoCaEncoder
    from moca_train.pooling import pool
    from moca_train.presets import PRESETS, build_model
    from moca_train.processing import MAX_PIXELS, MIN_PIXELS, load_processor

    shape = dataclasses.replace(PRESETS["3b"], layers=2, vision_depth=2, fullatt_blocks=(1,))
    processor = load_processor(None, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    model = build_model(shape, processor.tokenizer, dtype=torch.bfloat16)
    text = model.config.text_config
    assert (text.hidden_size, text.vocab_size, model.config.vision_config.hidden_size) == (2048, 151936, 1280)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    folder = MoCaEncoder(model, processor).save_pretrained(tmp_path / "enc-3b")
    del model

    enc = MoCaEncoder.from_pretrained(folder, dtype="bfloat16")  # strict: missing or unexpected keys raise
    assert {p.dtype for p in enc.model.parameters()} == {torch.bfloat16} and enc.dim == 2048

    # The pooling path: masked mean of the final states, L2-normalised in float32.
    query = "multiple choice questionnaires"
    got = enc.encode_queries([query])
    assert got.dtype == np.float32 and got.shape == (1, 2048)
    inputs = processor.tokenizer([query], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        hidden = enc.model.model(**inputs, use_cache=False).last_hidden_state
    want = pool(hidden, inputs["attention_mask"], "mean").numpy()
    assert np.abs(got - want).max() < 1e-6  # the same bf16 forward, the same float32 norm

    # A real page at MoCa's resolution (256-1024 visual tokens), in bf16.
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as doc:
        pix = doc[10].get_pixmap(dpi=144)
    page = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    assert 256 <= enc.image_tokens(page.size) <= 1024
    doc_vec = enc.encode_documents([page])
    assert np.isfinite(doc_vec).all() and abs(float(np.linalg.norm(doc_vec)) - 1) < 1e-5

    # The released checkpoints' layout (pre-4.52 keys, flat config) loads to the same vectors.
    legacy = legacy_copy(folder, tmp_path / "legacy")
    old = MoCaEncoder.from_pretrained(legacy, processor=folder, dtype="bfloat16")
    assert np.array_equal(old.encode_queries([query]), got)
    assert np.array_equal(old.encode_documents([page]), doc_vec)
    del old

    # docrag index with it, in bf16 on CPU: the stored vector is the encoder's.
    pdf = tmp_path / "docs" / "page.pdf"
    pdf.parent.mkdir()
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as src, pymupdf.open() as one:
        one.insert_pdf(src, from_page=10, to_page=10)
        one.save(pdf)
    svc = DocRag(Config(index_dir=tmp_path / "idx", encoder=str(folder), dtype="bfloat16", text_encoder="none",
                        dpi=144))
    svc.index([pdf.parent])
    hits = svc.search(query, mode="visual", top_k=1)
    assert [(h.page, h.doc_path.endswith("page.pdf")) for h in hits] == [(1, True)]
    assert {p.dtype for p in svc.encoder().load().model.parameters()} == {torch.bfloat16}
    assert hits[0].score == pytest.approx(float(doc_vec[0] @ got[0]), abs=2e-2)  # bf16: another batch, ~1e-2

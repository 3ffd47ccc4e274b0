import numpy as np
import pytest
import torch

from moca_train import prompts
from moca_train.modeling import MoCaEncoder
from moca_train.presets import build_model

QUERIES = ["revenue by region", "a much longer query about the quarterly revenue table in 2023", "x"]


@pytest.fixture(scope="module")
def encoder(tiny_ckpt):
    return MoCaEncoder.from_pretrained(tiny_ckpt)


def _first_token_change(model) -> float:
    ids = torch.tensor([[9707, 1879, 11, 1045, 3409, 13]])
    changed = ids.clone()
    changed[0, -1] = 30
    with torch.no_grad():
        a = model.model(input_ids=ids).last_hidden_state[0, 0]
        b = model.model(input_ids=changed).last_hidden_state[0, 0]
    return float((a - b).abs().max())


def test_attention_is_bidirectional_and_causal_config_is_not(processor):
    bidirectional = build_model("tiny", processor.tokenizer, seed=1)
    assert _first_token_change(bidirectional) > 1e-4
    causal = build_model("tiny", processor.tokenizer, seed=1, bidirectional=False)
    assert _first_token_change(causal) < 1e-6


def test_loaded_checkpoint_is_bidirectional(encoder):
    assert encoder.model.config.text_config.is_causal is False
    assert _first_token_change(encoder.model) > 1e-4


def test_padded_batch_equals_one_at_a_time(encoder, page_images):
    batch = encoder.encode_documents(page_images)
    single = np.stack([encoder.encode_documents([im])[0] for im in page_images])
    assert batch.dtype == np.float32 and batch.shape == (len(page_images), encoder.dim)
    assert np.abs(batch - single).max() < 1e-5
    q_batch = encoder.encode_queries(QUERIES)
    q_single = np.stack([encoder.encode_queries([q])[0] for q in QUERIES])
    assert np.abs(q_batch - q_single).max() < 1e-5


def test_token_budget_splits_batches_without_changing_results(tiny_ckpt, page_images, encoder):
    small_budget = MoCaEncoder.from_pretrained(tiny_ckpt, token_budget=64)
    seen = []
    got = small_budget.encode_documents(page_images, progress=seen.append)
    assert len(seen) > 1 and sum(seen) == len(page_images)
    assert np.abs(got - encoder.encode_documents(page_images)).max() < 1e-5


def test_embedding_is_masked_mean_of_last_hidden_state(encoder, page_images):
    proc = encoder.processor
    texts = [prompts.DOCUMENT] * 2
    pages = [page_images[2], page_images[3]]
    inputs = proc(text=texts, images=pages, padding=True, return_tensors="pt")
    assert inputs["attention_mask"].min() == 0  # the two pages differ in size: there is padding
    with torch.no_grad():
        hidden = encoder.model.model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    expected = (hidden * mask).sum(1) / mask.sum(1)
    expected = expected / expected.norm(dim=-1, keepdim=True)
    got = encoder.encode_documents(pages)
    assert np.abs(got - expected.numpy()).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_eos_pooling_takes_the_appended_eos_state(encoder):
    eos = MoCaEncoder(encoder.model, encoder.processor, pooling="eos")
    tok = encoder.processor.tokenizer
    ids = tok(["revenue by region" + tok.eos_token], return_tensors="pt", add_special_tokens=False)
    assert ids["input_ids"][0, -1] == tok.eos_token_id
    with torch.no_grad():
        last = encoder.model.model(**ids).last_hidden_state[0, -1]
    got = eos.encode_queries(["revenue by region"])[0]
    assert np.abs(got - (last / last.norm()).numpy()).max() < 1e-5
    # Batched with a longer query (right padding) gives the same vector.
    assert np.abs(eos.encode_queries(["revenue by region", QUERIES[1]])[0] - got).max() < 1e-5
    assert np.abs(got - encoder.encode_queries(["revenue by region"])[0]).max() > 1e-3


def test_unknown_pooling_is_rejected(encoder):
    with pytest.raises(ValueError, match="pooling"):
        MoCaEncoder(encoder.model, encoder.processor, pooling="cls")


def test_qwen2_vl_backbone_encodes(processor, page_images):
    model = build_model("tiny", processor.tokenizer, family="qwen2_vl", seed=0)
    assert model.config.model_type == "qwen2_vl"
    enc = MoCaEncoder(model, processor)
    docs = enc.encode_documents(page_images[:2])
    single = enc.encode_documents(page_images[1:2])
    assert docs.shape == (2, 64) and np.abs(docs[1] - single[0]).max() < 1e-5
    assert _first_token_change(model) > 1e-4


def test_a_strip_page_is_padded_to_an_aspect_ratio_the_processor_takes(encoder):
    # Qwen-VL's image processor refuses width:height beyond 1:200 (a receipt, a strip page rendered whole).
    from PIL import Image

    strip = Image.new("RGB", (2, 16383), "white")
    wide = Image.new("RGB", (9000, 20), "white")
    vectors = encoder.encode_documents([strip, wide])
    assert vectors.shape == (2, encoder.dim) and np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], vectors[1])

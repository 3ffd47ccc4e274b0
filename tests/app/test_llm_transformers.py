"""The local transformers backend with a tiny, randomly initialised Qwen2.5-VL generator built from config.

Its text is nonsense; what is checked is the plumbing: page images reach `generate` as vision tokens,
the answer streams through `TextIteratorStreamer` chunk by chunk, and citations map as they should.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app import DocRag
from app.answer import map_citations
from app.llm import ImagePart, Message
from app.llm.transformers import TransformersVLM, chatml_prompt

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory) -> Path:
    from moca_train.checkpoint import save_pretrained_encoder
    from moca_train.presets import build_model
    from moca_train.processing import load_processor

    processor = load_processor(min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    model = build_model("tiny", processor.tokenizer, bidirectional=False)
    out = save_pretrained_encoder(model, processor, tmp_path_factory.mktemp("gen") / "tiny-vlm")
    return out


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    docs = tmp_path_factory.mktemp("docs")
    shutil.copy(ROOT / "examples" / "solar-maintenance.pdf", docs)
    idx = tmp_path_factory.mktemp("tf") / "idx"
    DocRag(index_dir=idx, encoder="none", dpi=48).index([docs])
    return idx


def test_prompt_has_one_vision_block_per_image(tmp_path):
    msgs = [Message("system", ["be brief"]), Message("user", ["[1] a:", ImagePart(tmp_path / "x.png"), "q"])]
    prompt = chatml_prompt(msgs)
    assert prompt.count("<|vision_start|><|image_pad|><|vision_end|>") == 1
    assert prompt.startswith("<|im_start|>system\nbe brief<|im_end|>\n") and prompt.endswith("<|im_start|>assistant\n")


def test_tiny_generator_streams_and_maps_citations(tiny_generator, index_dir):
    rag = DocRag(index_dir=index_dir, encoder="none", llm="transformers", llm_model=str(tiny_generator),
                 llm_max_tokens=12, llm_image_max_side=112)
    llm = rag.llm()
    assert isinstance(llm, TransformersVLM) and llm.model.config.text_config.is_causal is True
    seen = {}
    real_generate = llm.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return real_generate(**kwargs)

    llm.model.generate = spy
    stream = rag.ask("inverter faults", top_k=2)
    chunks = list(stream)
    answer = stream.result()
    image_id = llm.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (seen["input_ids"] == image_id).sum() > 0 and seen["pixel_values"] is not None
    assert seen["image_grid_thw"].shape[0] == 2  # both retrieved pages went in as images
    assert "streamer" in seen and len(chunks) >= 2  # text arrived in pieces, not at once
    assert answer.answer.startswith("".join(chunks[: len(chunks) - (1 if answer.invalid else 0)]))
    assert len(answer.pages) == 2
    # Nonsense text cites nothing on purpose; the mapping itself is shared with every backend:
    citations, invalid = map_citations(answer.answer + " [2] [5]", stream.hits, index_dir)
    assert citations[-1].n == 2 and (citations[-1].doc, citations[-1].page) == (stream.hits[1].doc_path,
                                                                                stream.hits[1].page)
    assert 5 in invalid

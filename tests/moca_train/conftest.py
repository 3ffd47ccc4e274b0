from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

SMALL_PIXELS = dict(min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)


def _legacy_copy(src: Path, dst: Path, drop: str | None = None) -> Path:
    """Rewrite a checkpoint as the released MoCa checkpoints are laid out: pre-4.52 key names,
    a flat config without is_causal, no tokenizer files."""
    dst.mkdir()
    weights = load_file(str(src / "model.safetensors"))
    legacy = {}
    for key, value in weights.items():
        key = key.replace("model.language_model.", "model.").replace("model.visual.", "visual.")
        legacy[key] = value
    assert any(k.startswith("model.layers.") for k in legacy) and any(k.startswith("visual.") for k in legacy)
    if drop:
        del legacy[drop]
    save_file(legacy, str(dst / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    text = config.pop("text_config")
    text.pop("is_causal", None)
    text.pop("model_type", None)
    config.update(text)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture(scope="session")
def legacy_copy():
    """`legacy_copy(src, dst, drop=None)`: a checkpoint rewritten in the released MoCa checkpoints' layout."""
    return _legacy_copy


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny randomly initialised encoder checkpoint at a small image resolution."""
    from moca_train.presets import init_checkpoint

    return init_checkpoint("tiny", tmp_path_factory.mktemp("tiny"), seed=0, **SMALL_PIXELS)


@pytest.fixture(scope="session")
def page_images() -> list[Image.Image]:
    """Page-like images of different sizes (so batches need padding)."""
    images = []
    for i, (w, h) in enumerate([(300, 420), (420, 300), (256, 256), (500, 700)]):
        im = Image.new("RGB", (w, h), "white")
        draw = ImageDraw.Draw(im)
        for line in range(6):
            draw.text((10, 10 + 20 * line), f"page {i} line {line} revenue {i * 7 + line}", fill="black")
        draw.rectangle((20 + 10 * i, h - 80, 120 + 10 * i, h - 20), fill=(200, 40 * i, 90))
        images.append(im)
    return images


# ---- CPT (stage 1): rows from a real Debian PDF and shared tiny runs ---------------------------------
# Session-scoped: the 40-step run serves both the loss-drop test and the resume test.

# Small pages (16-32 merged visual tokens) and short rows keep a tiny-preset step well under a second.
MIN_PIXELS = 16 * 28 * 28
MAX_PIXELS = 32 * 28 * 28
STEPS = 40


def tiny_cpt_config(data: list, out: Path, **train):
    from moca_train.stages.cpt import CPTConfig

    settings = {
        "out": str(out), "max_steps": STEPS, "lr": 3.0e-3, "warmup_ratio": 0.1, "grad_clip": 5.0, "precision": "fp32",
        "gradient_checkpointing": False, "tensorboard": False, "prefetch": 1, "log_every": 1, "seed": 0,
    }
    settings.update(train)
    return CPTConfig.from_dict({
        "base": "tiny", "data": data, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "max_len": 128,
        "token_budget": 1024, "pool_rows": 20, "mlm_ratio": 0.4, "mae_ratio": 0.5, "mae_weight": 0.5, "seed": 0,
        "train": settings,
    })


@pytest.fixture(scope="session")
def make_cpt_config():
    """`tiny_cpt_config(data, out, **train_overrides)`: the tests' tiny CPT settings."""
    return tiny_cpt_config


@pytest.fixture(scope="session")
def cpt_jsonl(tmp_path_factory, debian_pdfs) -> Path:
    """CPT rows (page image + text layer) of the first 16 pages of the Debian AMC sample PDF."""
    from moca_train.data import build_cpt_data

    out = tmp_path_factory.mktemp("cpt-data") / "pages.jsonl"
    # 36 dpi: the collator downsizes pages to <= 32 visual tokens anyway; small PNGs decode fast.
    report = build_cpt_data([debian_pdfs["sample-plain.pdf"]], out, max_pages=16, dpi=36)
    assert report.pages == 16 and not report.problems
    return out


@pytest.fixture(scope="session")
def straight_run(cpt_jsonl, tmp_path_factory) -> Path:
    """40 steps of the tiny preset in one go (checkpoint every 20, TensorBoard on)."""
    from moca_train.stages.cpt import run_cpt

    out = tmp_path_factory.mktemp("cpt-straight")
    summary = run_cpt(tiny_cpt_config([str(cpt_jsonl)], out, save_every=20, tensorboard=True))
    assert summary["step"] == STEPS and summary["exported"] == str(out)
    return out


@pytest.fixture(scope="session")
def resumed_run(cpt_jsonl, tmp_path_factory) -> Path:
    """The same run stopped after step 20, then resumed by a fresh trainer to step 40."""
    from moca_train.stages.cpt import run_cpt

    out = tmp_path_factory.mktemp("cpt-resumed")
    first = run_cpt(tiny_cpt_config([str(cpt_jsonl)], out, save_every=20, stop_at=20))
    assert first["step"] == 20 and first["exported"] is None
    second = run_cpt(tiny_cpt_config([str(cpt_jsonl)], out, save_every=20))
    assert second["step"] == STEPS
    return out


# ---- contrastive (stage 2): pairs from real Debian PDF pages --------------------------------------------------


def _page_pairs(pages_jsonl: Path) -> tuple[list[dict], list[dict]]:
    """(query -> page image pairs with 2 hard negatives, query -> text pairs) from CPT page rows."""
    import json

    rows = [json.loads(line) for line in pages_jsonl.read_text().splitlines()]
    images, texts = [], []
    for i, r in enumerate(rows):
        words = r["text"].replace("<image>", "").split()
        images.append({"query": " ".join(words[2:14]) or f"page {i}", "pos_image": r["images"][0],
                       "neg_images": [rows[(i + 1) % len(rows)]["images"][0]], "negs": [" ".join(words[-12:])],
                       "pos_doc": "manual.pdf", "pos_page": i + 1})
        texts.append({"query": " ".join(words[2:10]) or f"p{i}", "pos": " ".join(words[10:40]) or f"text {i}"})
    return images, texts


@pytest.fixture(scope="session")
def pair_sources(tmp_path_factory, debian_pdfs) -> dict[str, Path]:
    """Two pair sources from 12 pages of the AMC manual: 'pages' (query -> page image, hard negatives:
    the next page and a text) and 'text' (query -> text)."""
    from moca_train.data import build_cpt_data
    from moca_train.data.pairs import write_pairs

    root = tmp_path_factory.mktemp("pairs")
    pages = root / "pages_cpt.jsonl"
    report = build_cpt_data([debian_pdfs["auto-multiple-choice.en.pdf"]], pages, max_pages=12, dpi=36)
    assert report.pages == 12
    images, texts = _page_pairs(pages)
    write_pairs(images, root / "pages.jsonl")
    write_pairs(texts, root / "text.jsonl")
    return {"pages": root / "pages.jsonl", "text": root / "text.jsonl"}


def tiny_cl_config(data: list, out: Path, *, train: dict | None = None, **settings):
    from moca_train.stages.contrastive import ContrastiveConfig

    t = {"out": str(out), "max_steps": 4, "lr": 1.0e-3, "warmup_ratio": 0.0, "grad_clip": 5.0, "precision": "fp32",
         "gradient_checkpointing": False, "tensorboard": False, "prefetch": 0, "log_every": 1, "seed": 0}
    t.update(train or {})
    base = {"base": "tiny", "data": data, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "max_text_tokens": 48,
            "batch_size": 3, "hard_negatives": 2, "seed": 0, "train": t}
    base.update(settings)
    return ContrastiveConfig.from_dict(base)


@pytest.fixture(scope="session")
def make_cl_config():
    """`tiny_cl_config(data, out, train={...}, **settings)`: the tests' tiny contrastive settings."""
    return tiny_cl_config

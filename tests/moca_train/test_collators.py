"""CPTCollator: MLM and MAE corruption exactly as RECIPE.md, truncation that never cuts an image."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from moca_train.collators import IGNORE_INDEX, MASK_TOKEN, CPTCollator, check_vocab, ensure_mask_token
from moca_train.data import CPTRow, DataError
from moca_train.processing import special_token_ids

WORDS = "the quarterly revenue table shows growth in every region while costs fell sharply".split()


def _page(path, w, h, seed=0):
    im = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(im)
    for k in range(0, h - 10, 12):
        draw.text((4, k), f"line {k + seed} {WORDS[(k + seed) % len(WORDS)]}", fill=(0, 0, 0))
    im.save(path)
    return path.name


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """64 interleaved rows: text, an image, more text (some with special-token strings as text)."""
    d = tmp_path_factory.mktemp("collate")
    out = []
    for i in range(64):
        name = _page(d / f"p{i}.png", 120 + 10 * (i % 5), 160 + 8 * (i % 3), seed=i)
        before = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(30))
        after = " ".join(WORDS[(3 * i + k) % len(WORDS)] for k in range(40))
        if i % 8 == 0:
            after += " <|im_start|> <|endoftext|> literally"  # text that looks like control tokens
        out.append(CPTRow(text=f"{before} <image> {after}", images=[name], base_dir=str(d)))
    return out


@pytest.fixture(scope="module")
def processor():
    """A private processor: adding <|mask|> must not leak into the session-wide one."""
    from moca_train.processing import load_processor

    return load_processor(min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)


@pytest.fixture(scope="module")
def collator(processor):
    return CPTCollator(processor, mlm_ratio=0.4, mae_ratio=0.5, max_len=1280)


def test_mask_token_is_added_as_special_inside_the_embedding(processor):
    tok = processor.tokenizer
    mid = ensure_mask_token(tok)
    assert mid == tok.convert_tokens_to_ids(MASK_TOKEN) == 151665  # Qwen's first free id
    assert ensure_mask_token(tok) == mid  # idempotent
    assert tok(f"a{MASK_TOKEN}b", add_special_tokens=False)["input_ids"][1] == mid

    class Model:  # only the embedding size matters
        resized = None

        def get_input_embeddings(self):
            return torch.nn.Embedding(151_936, 2)

        def resize_token_embeddings(self, n, pad_to_multiple_of=None):
            self.resized = n

    m = Model()
    check_vocab(m, tok)
    assert m.resized is None  # 151,666 tokens fit in 151,936 rows: no resize


def test_mlm_masks_the_configured_fraction_of_eligible_tokens_only(collator, rows, processor):
    samples = [collator.prepare(r) for r in rows]
    batch = collator(samples, generator=torch.Generator().manual_seed(0))
    ids = torch.full_like(batch["input_ids"], collator.pad_id)
    for i, s in enumerate(samples):
        ids[i, : s.length] = torch.tensor(s.input_ids)
    special = torch.tensor(sorted(special_token_ids(processor.tokenizer)))
    attn = batch["attention_mask"].bool()
    eligible = attn & ~torch.isin(ids, special)
    masked = batch["labels"] != IGNORE_INDEX
    assert eligible.sum() > 3000
    frac = float(masked.sum() / eligible.sum())
    assert abs(frac - 0.4) < 0.03, frac
    # Never a special, vision or pad position; labels are the original ids, unshifted; -100 elsewhere.
    assert not (masked & ~eligible).any()
    assert torch.equal(batch["labels"][masked], ids[masked])
    assert (batch["labels"][~masked] == IGNORE_INDEX).all()
    assert (batch["input_ids"][masked] == collator.mask_id).all()
    assert torch.equal(batch["input_ids"][~masked], ids[~masked])
    # Image tokens are all still there, and mm_token_type_ids marks exactly them.
    assert torch.equal(batch["mm_token_type_ids"].bool(), ids == collator.image_id)
    assert int((batch["input_ids"] == collator.image_id).sum()) == sum(s.image_tokens for s in samples)
    # Literal "<|im_start|>" in page text is text (split), so it can be masked like any word.
    assert collator.tokenizer.convert_tokens_to_ids("<|im_start|>") not in set(ids[attn].tolist())


def test_ratio_is_configurable_and_draws_are_seeded(processor, rows):
    c = CPTCollator(processor, mlm_ratio=0.15, mae_ratio=0.8)
    samples = [c.prepare(r) for r in rows]
    a = c(samples, generator=torch.Generator().manual_seed(1))
    b = c(samples, generator=torch.Generator().manual_seed(1))
    other = c(samples, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["mae_mask"], b["mae_mask"])
    assert not torch.equal(a["labels"], other["labels"])
    eligible = a["attention_mask"].bool() & (a["mm_token_type_ids"] == 0)
    assert abs(float((a["labels"] != IGNORE_INDEX).sum() / eligible.sum()) - 0.15) < 0.03
    assert abs(float(a["mae_mask"].float().mean()) - 0.8) < 0.05
    with pytest.raises(ValueError, match="ratios"):
        CPTCollator(processor, mlm_ratio=1.0)


def test_mae_masks_merged_tokens_and_targets_are_the_original_pixel_rows(collator, rows, processor):
    samples = [collator.prepare(r) for r in rows[:16]]
    batch = collator(samples, generator=torch.Generator().manual_seed(3))
    # Independent reference: the image processor on the same images.
    images = [Image.open(f"{r.base_dir}/{r.images[0]}").convert("RGB") for r in rows[:16]]
    ref = processor.image_processor(images=images, return_tensors="pt")
    assert torch.equal(batch["image_grid_thw"], ref["image_grid_thw"])
    assert torch.equal(batch["pixel_values"], ref["pixel_values"])  # unmasked: the model masks at its input
    n_merged = ref["pixel_values"].shape[0] // 4
    assert batch["mae_mask"].shape == (n_merged,) and batch["mae_mask"].dtype == torch.bool
    assert n_merged == int((batch["input_ids"] == collator.image_id).sum())  # one mask bit per visual token
    assert abs(float(batch["mae_mask"].float().mean()) - 0.5) < 0.06
    want = ref["pixel_values"].view(n_merged, 4, 1176)[batch["mae_mask"]]
    assert batch["mae_targets"].shape == (int(batch["mae_mask"].sum()), 4, 1176)
    assert torch.equal(batch["mae_targets"], want)


def test_truncation_never_cuts_an_image(collator, rows, processor):
    row = rows[0]
    full = collator.prepare(row)
    n_img = full.image_tokens
    start = full.input_ids.index(collator.vision_start_id)
    # Room for the text before the image but not for the whole image: the image is dropped, not cut.
    short = CPTCollator(processor, max_len=start + n_img)  # one short of <start> + n + <end>
    s = short.prepare(row)
    assert s.truncated and s.images == [] and s.image_tokens == 0
    assert collator.image_id not in s.input_ids and collator.vision_start_id not in s.input_ids
    assert s.input_ids == full.input_ids[:start]
    # Exactly enough room: the whole image, then nothing.
    exact = CPTCollator(processor, max_len=start + n_img + 2).prepare(row)
    assert exact.image_tokens == n_img and exact.input_ids == full.input_ids[: start + n_img + 2]
    # Text after the image is cut token-wise.
    cut = CPTCollator(processor, max_len=start + n_img + 7).prepare(row)
    assert cut.truncated and cut.length == start + n_img + 7 and cut.image_tokens == n_img
    # A batch with the truncated rows still lines up images and tokens.
    batch = collator([s, exact, cut], generator=torch.Generator().manual_seed(0))
    assert batch["image_grid_thw"].shape[0] == 2
    assert int((batch["input_ids"] == collator.image_id).sum()) == 2 * n_img == batch["mae_mask"].numel()


def test_text_only_rows_and_costs(collator, processor):
    s = collator.prepare(CPTRow(text="plain text only, no images at all"))
    assert s.images == [] and s.cost == s.length == s.text_tokens
    batch = collator([s], generator=torch.Generator().manual_seed(0))
    assert "pixel_values" not in batch and batch["mae_mask"].numel() == 0
    assert batch["mae_targets"].shape == (0, 4, 1176)
    assert collator.prepare(CPTRow(text="")) is None
    fixed = CPTCollator(processor, pad_to=64)([s], generator=torch.Generator().manual_seed(0))
    assert fixed["input_ids"].shape == (1, 64) and int(fixed["attention_mask"].sum()) == s.length


def test_image_cost_and_unreadable_images(collator, rows, tmp_path):
    s = collator.prepare(rows[1])
    assert s.cost == s.text_tokens + 4 * s.image_tokens + 2
    with pytest.raises(DataError, match="cannot open image"):
        collator.prepare(CPTRow(text="<image> x", images=["missing.png"], base_dir=str(tmp_path)))

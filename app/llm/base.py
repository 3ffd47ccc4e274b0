"""The one small interface every answer model sits behind, and the message format it takes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image


class LLMError(RuntimeError):
    """The model could not answer (endpoint unreachable, timed out, refused): one line for the user."""


class LLMNotConfigured(LLMError):
    def __init__(self) -> None:
        super().__init__(HOW_TO_CONFIGURE)


HOW_TO_CONFIGURE = ("no LLM configured: set llm_base_url (OpenAI-compatible endpoint, e.g. "
                    "DOCRAG_LLM_BASE_URL=http://localhost:11434/v1 DOCRAG_LLM_MODEL=qwen2.5vl) or "
                    "DOCRAG_LLM=transformers DOCRAG_LLM_MODEL=/path/to/Qwen2.5-VL-Instruct")


@dataclass(frozen=True)
class ImagePart:
    """A page image, read from the page store when the backend needs it."""

    path: Path

    def load(self, max_side: int | None = None) -> Image.Image:
        with Image.open(self.path) as im:
            image = im.convert("RGB")
        if max_side and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # keeps the aspect ratio
        return image


@dataclass
class Message:
    """One chat message: a role and its parts, text (str) and images (ImagePart), in order."""

    role: str  # system | user | assistant
    parts: list[str | ImagePart] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.parts if isinstance(p, ImagePart)]


@runtime_checkable
class LLM(Protocol):
    """A vision-language chat model that streams its answer as text chunks."""

    name: str

    def stream(self, messages: list[Message], image_max_side: int | None = None) -> Iterator[str]:
        """The answer's text, chunk by chunk. Raises `LLMError` (one line) when the model cannot answer."""
        ...

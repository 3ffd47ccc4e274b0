"""What every stage's data shares: the one-line data error, image references, weighted JSONL sources.

An image reference in a row is a path relative to the JSONL's folder, an absolute path, or a ``data:`` URI.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..imaging import pad_to_aspect, padded_size


class DataError(ValueError):
    """A row that cannot be used (bad JSON, wrong fields, placeholder/image count mismatch, unreadable image)."""




def _image_bytes(ref: str) -> bytes:
    """Decode a ``data:[mime];base64,...`` URI."""
    header, _, payload = ref.partition(",")
    if not header.endswith(";base64"):
        raise DataError(f"only base64 data URIs are supported (got {header[:40]!r})")
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as e:
        raise DataError(f"bad base64 image data: {e}") from None


def open_image(ref: str, base_dir: str | os.PathLike = ".") -> Image.Image:
    """Open (lazily: header only until pixels are needed) the image a row refers to."""
    try:
        if ref.startswith("data:"):
            return Image.open(io.BytesIO(_image_bytes(ref)))
        path = Path(ref)
        if not path.is_absolute():
            path = Path(base_dir) / path
        return Image.open(path)
    except (OSError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot open image {ref[:80]!r}: {e}") from None


def load_image(ref: str, base_dir: str | os.PathLike = ".") -> Image.Image:
    """The image a row refers to, decoded, RGB (a strip padded to an aspect ratio the processor takes)."""
    with open_image(ref, base_dir) as im:
        try:
            return pad_to_aspect(im.convert("RGB"))
        except OSError as e:
            raise DataError(f"cannot decode image {ref[:80]!r}: {e}") from None


def image_size(ref: str, base_dir: str | os.PathLike = ".") -> tuple[int, int]:
    """(width, height) `load_image` gives, from the file header, without decoding the pixels."""
    with open_image(ref, base_dir) as im:
        return padded_size(*im.size)


def data_uri(image: Image.Image, fmt: str = "PNG") -> str:
    """An image as a ``data:`` URI (for rows that carry their images inline)."""
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---- sources ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A JSONL file and its mixing weight."""

    path: str
    weight: float = 1.0

    @classmethod
    def parse(cls, spec: str | dict | Source) -> Source:
        """``"data.jsonl"``, ``"data.jsonl:0.3"`` or ``{"path": ..., "weight": ...}``."""
        if isinstance(spec, Source):
            return spec
        if isinstance(spec, dict):
            return cls(str(spec["path"]), float(spec.get("weight", 1.0)))
        path, sep, weight = str(spec).rpartition(":")
        if sep and path:
            try:
                return cls(path, float(weight))
            except ValueError:
                pass
        return cls(str(spec), 1.0)


def iter_jsonl(path: str | os.PathLike, offset: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """(line start offset, next line offset, raw line) from a byte offset on, skipping blank lines."""
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            start = f.tell()
            line = f.readline()
            if not line:
                return
            if line.strip():
                yield start, f.tell(), line



__all__ = ["DataError", "Source", "data_uri", "image_size", "iter_jsonl", "load_image", "open_image"]

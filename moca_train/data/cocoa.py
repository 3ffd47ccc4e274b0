"""CoCoA reconstruction rows: an input (block A: text with ``<image>`` placeholders, as in CPT rows) and
the target text (block B) that must be rebuilt through the EOS state.

A row is ``{"text": "<image>\\nWhat does the chart show?", "images": ["a.png"], "target": "Sales by region."}``.
Without ``target``, a row in the CPT format is split after its last image: the images (and any text
before them) are the input and the text after them is the target -- so `docrag train data cpt` page
rows (page image, then its text layer) train the EOS state to carry the page's text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .common import DataError
from .cpt import IMAGE_PLACEHOLDER, CPTRow, CPTStream, parse_row


@dataclass
class CocoaRow(CPTRow):
    target: str = ""


def parse_cocoa_row(obj: object, base_dir: str | os.PathLike = ".", source: str = "") -> CocoaRow:
    row = parse_row(obj, base_dir, source)
    target = obj.get("target") if isinstance(obj, dict) else None
    text = row.text
    if target is None:
        cut = text.rfind(IMAGE_PLACEHOLDER)
        if cut < 0:
            raise DataError("a row without 'target' needs an <image> to split after (or give 'target')")
        cut += len(IMAGE_PLACEHOLDER)
        text, target = text[:cut], text[cut:].strip()
    if not isinstance(target, str) or not target.strip():
        raise DataError("'target' must be a non-empty string")
    return CocoaRow(text=text, images=row.images, base_dir=row.base_dir, source=row.source, target=target)


class CocoaStream(CPTStream):
    """`CPTStream` over CoCoA rows (weighted sources, exact resume)."""

    parse = staticmethod(parse_cocoa_row)
    row_type = CocoaRow


__all__ = ["CocoaRow", "CocoaStream", "parse_cocoa_row"]

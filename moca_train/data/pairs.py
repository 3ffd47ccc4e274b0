"""Contrastive pairs: one JSONL row format, several weighted sources, each with its own prompts.

A row is ``{"query": text, "query_image": optional, "pos": text or null, "pos_image": optional,
"negs": [text, ...], "neg_images": [image, ...], "source": name}``: a query (text, optionally with an
image), its positive document (a text, or an image such as a page) and hard negatives (texts and/or
images). Images are references as in every row format (a path relative to the JSONL's folder, an
absolute path, or a ``data:`` URI). Optional ``pos_doc``/``pos_page`` say which indexed page the positive
is (`docrag train mine` uses them to skip it and its neighbours).

A source is ``"pairs.jsonl"``, ``"pairs.jsonl:0.3"`` or ``{"path": ..., "weight": ..., "name": ...,
"prompts": {"query": ..., "query_image": ..., "doc": ..., "doc_image": ...}}``. A prompt is a raw string
(no chat template) in which ``{text}`` stands for the row's text; the image prompts hold one image
(``<|vision_start|><|image_pad|><|vision_end|>``). Defaults are MoCa's (RECIPE.md): a text query is its
raw text, an image + question query gets the image-question prompt, a page image the document prompt.

Rows are validated when a source is opened; the file is indexed by byte offset and rows are read on demand.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import prompts
from .common import DataError, Source, iter_jsonl

log = logging.getLogger(__name__)

DEFAULT_PROMPTS = {
    "query": "{text}",
    "query_image": prompts.IMAGE_QUESTION.replace("{question}", "{text}"),
    "doc": "{text}",
    "doc_image": prompts.DOCUMENT,
}


@dataclass
class Doc:
    """One side of a pair: a text, an image, or both (an image prompt may use the text)."""

    text: str | None = None
    image: str | None = None


@dataclass
class PairRow:
    query: str
    pos: str | None = None
    query_image: str | None = None
    pos_image: str | None = None
    negs: list[str] = field(default_factory=list)
    neg_images: list[str] = field(default_factory=list)
    source: str = ""
    base_dir: str = "."
    pos_doc: str | None = None
    pos_page: int | None = None

    @property
    def query_doc(self) -> Doc:
        return Doc(self.query, self.query_image)

    @property
    def positive(self) -> Doc:
        return Doc(self.pos, self.pos_image)

    @property
    def negatives(self) -> list[Doc]:
        return [Doc(text=t) for t in self.negs] + [Doc(image=i) for i in self.neg_images]

    def to_json(self) -> dict:
        row = {"query": self.query, "query_image": self.query_image, "pos": self.pos, "pos_image": self.pos_image,
               "negs": list(self.negs), "neg_images": list(self.neg_images), "source": self.source}
        if self.pos_doc is not None:
            row["pos_doc"] = self.pos_doc
        if self.pos_page is not None:
            row["pos_page"] = self.pos_page
        return {k: v for k, v in row.items() if v is not None}


def _opt_str(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise DataError(f"'{key}' must be a string or null")
    return value or None


def _str_list(obj: dict, key: str) -> list[str]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"'{key}' must be a list of strings")
    return list(value)


def parse_pair(obj: object, base_dir: str | os.PathLike = ".", source: str = "") -> PairRow:
    """Validate one decoded JSON object as a `PairRow`."""
    if not isinstance(obj, dict):
        raise DataError(f"row is a {type(obj).__name__}, expected an object with 'query' and 'pos'/'pos_image'")
    query = obj.get("query")
    if not isinstance(query, str) or not (query.strip() or obj.get("query_image")):
        raise DataError("'query' must be a non-empty string (or empty with a 'query_image')")
    pos, pos_image = _opt_str(obj, "pos"), _opt_str(obj, "pos_image")
    if pos is None and pos_image is None:
        raise DataError("a row needs a positive: 'pos' (text) or 'pos_image'")
    page = obj.get("pos_page")
    if page is not None and not isinstance(page, int):
        raise DataError("'pos_page' must be an integer")
    return PairRow(
        query=query, pos=pos, query_image=_opt_str(obj, "query_image"), pos_image=pos_image,
        negs=_str_list(obj, "negs"), neg_images=_str_list(obj, "neg_images"),
        source=str(obj.get("source") or source), base_dir=str(base_dir),
        pos_doc=_opt_str(obj, "pos_doc"), pos_page=page,
    )


# ---- sources ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairSource:
    """A pair JSONL file, its mixing weight, its name (the task a batch comes from) and its prompts."""

    path: str
    weight: float = 1.0
    name: str = ""
    prompts: dict = field(default_factory=dict, hash=False)

    @classmethod
    def parse(cls, spec: str | dict | PairSource, default_prompts: dict | None = None) -> PairSource:
        if isinstance(spec, PairSource):
            return spec
        extra: dict = {}
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - {"path", "weight", "name", "prompts"})
            if unknown:
                raise ValueError(f"{spec.get('path')}: unknown source settings: {', '.join(unknown)}")
            extra = spec.get("prompts") or {}
        base = Source.parse(spec if not isinstance(spec, dict) else {"path": spec["path"],
                                                                      "weight": spec.get("weight", 1.0)})
        merged = {**DEFAULT_PROMPTS, **(default_prompts or {}), **extra}
        bad = sorted(set(merged) - set(DEFAULT_PROMPTS))
        if bad:
            raise ValueError(f"{base.path}: unknown prompt kinds {', '.join(bad)} (use {', '.join(DEFAULT_PROMPTS)})")
        for kind in ("query_image", "doc_image"):
            if merged[kind].count(prompts.IMAGE) != 1:
                raise ValueError(f"{base.path}: the {kind} prompt must hold {prompts.IMAGE} exactly once")
        name = (spec.get("name") if isinstance(spec, dict) else None) or Path(base.path).stem
        return cls(base.path, base.weight, str(name), merged)


class PairFile:
    """The valid rows of one pair JSONL, indexed by byte offset (bad rows are skipped with a warning)."""

    def __init__(self, source: PairSource) -> None:
        self.source = source
        path = Path(source.path)
        if not path.is_file():
            raise FileNotFoundError(f"{source.path}: data file not found")
        self.base_dir = str(path.resolve().parent)
        self.offsets: list[int] = []
        self.skipped = 0
        for start, _end, line in iter_jsonl(path):
            try:
                parse_pair(json.loads(line), self.base_dir, source.name)
            except (json.JSONDecodeError, UnicodeDecodeError, DataError) as e:
                self.skipped += 1
                log.warning("%s: skipped the row at byte %d: %s", source.path, start, str(e)[:200])
                continue
            self.offsets.append(start)
        if not self.offsets:
            raise DataError(f"{source.path}: no usable pair rows")
        self._fh = None

    def __len__(self) -> int:
        return len(self.offsets)

    def row(self, i: int) -> PairRow:
        if self._fh is None:
            self._fh = open(self.source.path, "rb")  # noqa: SIM115 - kept open for random access
        self._fh.seek(self.offsets[i])
        row = parse_pair(json.loads(self._fh.readline()), self.base_dir, self.source.name)
        row.source = self.source.name  # the task is the source's, whatever the row says
        return row


def write_pairs(rows: Iterable[PairRow | dict], path: str | os.PathLike) -> int:
    """Write pair rows as JSONL (through a temporary file, then renamed); returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            obj = row.to_json() if isinstance(row, PairRow) else row
            parse_pair(obj)  # never write a row the trainer would reject
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_pairs(path: str | os.PathLike) -> list[PairRow]:
    """Every valid row of a pair file (small files: tools, tests)."""
    f = PairFile(PairSource.parse(str(path)))
    return [f.row(i) for i in range(len(f))]


__all__ = ["DEFAULT_PROMPTS", "Doc", "PairFile", "PairRow", "PairSource", "parse_pair", "read_pairs", "write_pairs"]

"""Continual pre-training data: one JSONL row format, streamed and mixed, and a PDF -> JSONL builder.

A row is ``{"text": "... <image> ...", "images": ["pages/a.png", "data:image/png;base64,..."]}``: each
``<image>`` placeholder in ``text`` takes the next entry of ``images`` (a path relative to the JSONL's
folder, an absolute path, or a ``data:`` URI). Plain text and image-caption pairs are the same format.

`CPTStream` reads several JSONL files without loading them (it keeps a byte offset per file), mixes
them by weight with a per-sample seeded RNG, and can stop and resume exactly from `state_dict()`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import IterableDataset

from .common import DataError, Source, iter_jsonl

log = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"


@dataclass
class CPTRow:
    """One interleaved document. ``images[i]`` fills the i-th ``<image>`` of ``text``."""

    text: str
    images: list[str] = field(default_factory=list)
    base_dir: str = "."  # where relative image paths are resolved (the JSONL's folder)
    source: str = ""

    def to_json(self) -> dict:
        return {"text": self.text, "images": list(self.images)}


def parse_row(obj: object, base_dir: str | os.PathLike = ".", source: str = "") -> CPTRow:
    """Validate one decoded JSON object as a `CPTRow`."""
    if not isinstance(obj, dict):
        raise DataError(f"row is a {type(obj).__name__}, expected an object with 'text' and 'images'")
    text = obj.get("text", "")
    images = obj.get("images") or []
    if not isinstance(text, str):
        raise DataError("'text' must be a string")
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise DataError("'images' must be a list of strings")
    n = text.count(IMAGE_PLACEHOLDER)
    if n != len(images):
        raise DataError(f"text has {n} {IMAGE_PLACEHOLDER} placeholders but the row lists {len(images)} images")
    return CPTRow(text=text, images=list(images), base_dir=str(base_dir), source=source)


# ---- streaming + mixing ---------------------------------------------------------------------------------------


class CPTStream(IterableDataset):
    """Rows from several JSONL sources, mixed by weight, resumable.

    Sample ``i`` comes from a source drawn with an RNG seeded by ``(seed, i)``, so the mixture is
    reproducible and resuming needs only the counter and one byte offset per source. With
    ``loop=True`` (training) an exhausted source starts over (its ``epoch`` counts the passes);
    with ``loop=False`` it leaves the mixture and the stream ends when all are exhausted.
    ``shuffle_buffer > 0`` adds a seeded shuffle buffer whose contents are part of the state.
    Bad rows are skipped with a warning (a 30B-token run must not die on one broken line). A subclass
    reads another row format by overriding ``parse`` (a function like `parse_row`) and ``row_type``.
    """

    parse = staticmethod(parse_row)
    row_type = CPTRow

    def __init__(
        self,
        sources: Sequence[str | dict | Source],
        seed: int = 0,
        loop: bool = True,
        shuffle_buffer: int = 0,
    ) -> None:
        super().__init__()
        self.sources = [Source.parse(s) for s in sources]
        if not self.sources:
            raise ValueError("no data sources given")
        for s in self.sources:
            if s.weight < 0:
                raise ValueError(f"{s.path}: negative mixing weight {s.weight}")
            if not Path(s.path).is_file():
                raise FileNotFoundError(f"{s.path}: data file not found")
        if sum(s.weight for s in self.sources) <= 0:
            raise ValueError("mixing weights sum to zero")
        self.seed = seed
        self.loop = loop
        self.shuffle_buffer = shuffle_buffer
        self.skipped = 0
        self.reset()

    # state ------------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.sample = 0  # rows drawn from the mixture so far
        self.offsets = [0] * len(self.sources)
        self.epochs = [0] * len(self.sources)
        self.exhausted = [s.weight == 0 for s in self.sources]
        self.buffer: list[dict] = []
        self.emitted = 0  # rows yielded (differs from `sample` while a shuffle buffer fills)
        self._readers: list[Iterator | None] = [None] * len(self.sources)

    def state_dict(self) -> dict:
        return {
            "sample": self.sample,
            "emitted": self.emitted,
            "offsets": list(self.offsets),
            "epochs": list(self.epochs),
            "exhausted": list(self.exhausted),
            "buffer": [dict(r) for r in self.buffer],
            "paths": [s.path for s in self.sources],
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["offsets"]) != len(self.sources):
            raise ValueError(f"data state has {len(state['offsets'])} sources, this stream has {len(self.sources)}")
        self.reset()
        self.sample = int(state["sample"])
        self.emitted = int(state.get("emitted", self.sample))
        self.offsets = [int(o) for o in state["offsets"]]
        self.epochs = [int(e) for e in state["epochs"]]
        self.exhausted = [bool(x) for x in state.get("exhausted", self.exhausted)]
        self.buffer = [dict(r) for r in state.get("buffer", [])]

    # reading ----------------------------------------------------------------------------------------------------
    def _pick_source(self) -> int | None:
        live = [i for i, s in enumerate(self.sources) if not self.exhausted[i]]
        if not live:
            return None
        rng = random.Random(f"{self.seed}:{self.sample}")
        return rng.choices(live, weights=[self.sources[i].weight for i in live])[0]

    def _read_from(self, i: int) -> dict | None:
        """The next valid row of source ``i`` as a plain dict (None when it is exhausted for good)."""
        src = self.sources[i]
        base = str(Path(src.path).resolve().parent)
        restarted = False
        while True:
            if self._readers[i] is None:
                self._readers[i] = iter_jsonl(src.path, self.offsets[i])
            try:
                start, end, line = next(self._readers[i])
            except StopIteration:
                self._readers[i] = None
                if not self.loop or restarted:  # restarted and still nothing: no valid row in the file
                    if self.loop:
                        raise DataError(f"{src.path}: no usable rows") from None
                    self.exhausted[i] = True
                    return None
                self.offsets[i], self.epochs[i], restarted = 0, self.epochs[i] + 1, True
                continue
            self.offsets[i] = end
            try:
                row = self.parse(json.loads(line), base, source=src.path)
            except (json.JSONDecodeError, UnicodeDecodeError, DataError) as e:
                self.skipped += 1
                log.warning("%s: skipped the row at byte %d: %s", src.path, start, str(e)[:200])
                continue
            return dataclasses.asdict(row)

    def _draw(self) -> dict | None:
        while True:
            i = self._pick_source()
            if i is None:
                return None
            row = self._read_from(i)
            if row is not None:
                self.sample += 1
                return row

    def next_row(self) -> CPTRow | None:
        """The next row of the mixture (None at the end of a non-looping stream)."""
        if self.shuffle_buffer <= 0:
            row = self._draw()
        else:
            while len(self.buffer) < self.shuffle_buffer:
                row = self._draw()
                if row is None:
                    break
                self.buffer.append(row)
            if not self.buffer:
                return None
            j = random.Random(f"{self.seed}:shuffle:{self.emitted}").randrange(len(self.buffer))
            self.buffer[j], self.buffer[-1] = self.buffer[-1], self.buffer[j]
            row = self.buffer.pop()
        if row is None:
            return None
        self.emitted += 1
        return self.row_type(**row)

    def __iter__(self) -> Iterator[CPTRow]:
        while (row := self.next_row()) is not None:
            yield row


# ---- PDFs -> CPT rows -----------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    documents: int = 0
    pages: int = 0
    problems: list[str] = field(default_factory=list)
    images: dict[tuple[str, int], str] = field(default_factory=dict)  # (pdf, page) -> the row's image path


def page_row(image_path: str, text: str) -> dict:
    """A PDF page as an interleaved row: the page image, then its text layer."""
    # A literal "<image>" in the page text would claim an image that is not there.
    text = (text or "").replace(IMAGE_PLACEHOLDER, "<image >").strip()
    return {"text": IMAGE_PLACEHOLDER + "\n" + text, "images": [image_path]}


def build_cpt_data(
    pdf_paths: Iterable[str | os.PathLike],
    out_jsonl: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    dpi: int = 144,
    max_pages: int | None = None,
    renderer: str = "pymupdf",
    progress: Callable[[str, int], None] | None = None,
    keep: Callable[[Path, int], bool] | None = None,
) -> BuildReport:
    """Render PDFs (files or folders, scanned recursively) into CPT rows, one row per page.

    Page images go to ``image_dir`` (default ``<out folder>/pages``) as PNG; rows refer to them
    relative to the JSONL's folder. ``max_pages`` caps pages per document. ``progress(name, pages)``
    is called after each page. ``keep(pdf, page)`` selects pages (default all; e.g. every page but a
    held-out split's); ``report.images`` maps each written (pdf, page) to its row's image path.
    Unreadable documents or pages are reported, not fatal. The JSONL is
    written to a temporary file and renamed, so a failed run never leaves half a file.
    """
    from indexing.render import DocumentError, make_renderer
    from indexing.scan import scan

    out_jsonl = Path(out_jsonl)
    out_dir = out_jsonl.resolve().parent
    image_dir = Path(image_dir) if image_dir is not None else out_dir / "pages"
    image_dir.mkdir(parents=True, exist_ok=True)
    files, scan_problems = scan(pdf_paths)
    report = BuildReport(problems=[str(p) for p in scan_problems])
    rend = make_renderer(renderer, dpi=dpi)
    tmp = out_jsonl.with_name(out_jsonl.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for src in files:
            if src.kind != "pdf":
                continue
            doc_dir = image_dir / _doc_folder(src.path)
            doc_dir.mkdir(parents=True, exist_ok=True)
            pages = range(1, max_pages + 1) if max_pages else None
            try:
                if pages is not None or keep is not None:
                    count = rend.page_count(src.path)
                    last = min(max_pages or count, count)
                    pages = [p for p in range(1, last + 1) if keep is None or keep(src.path, p)]
                n = 0
                for page in rend.render(src.path, pages=pages, on_problem=lambda p: report.problems.append(str(p))):
                    png = doc_dir / f"p{page.number:05d}.png"
                    page.image.save(png, format="PNG")
                    rel = os.path.relpath(png.resolve(), out_dir)
                    out.write(json.dumps(page_row(rel, page.text), ensure_ascii=False) + "\n")
                    report.images[(str(src.path), page.number)] = rel
                    n += 1
                    report.pages += 1
                    if progress is not None:
                        progress(src.path.name, 1)
            except DocumentError as e:
                report.problems.append(str(e))
                continue
            report.documents += 1 if n else 0
    tmp.replace(out_jsonl)
    return report


def _doc_folder(path: Path) -> str:
    """A folder name per document: readable stem + a short hash of the full path (two a.pdf never collide)."""
    import hashlib

    stem = path.name
    for suffix in (".pdf.gz", ".pdf"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "doc"
    return f"{safe}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


__all__ = ["IMAGE_PLACEHOLDER", "BuildReport", "CPTRow", "CPTStream", "build_cpt_data", "page_row", "parse_row"]

"""HF `datasets` folders saved with ``save_to_disk``, read when the `datasets` package is installed.

Two shapes: ViDoRe-v2 (a DatasetDict, or three saved datasets in sub-folders, named ``corpus``
(``corpus-id``, ``image``), ``queries`` (``query-id``, ``query``, extra string columns are subsets) and
``qrels`` (``query-id``, ``corpus-id``, ``score``)); and ViDoRe-v1 QA (a Dataset, or a DatasetDict with a
``test`` split, with ``query`` and ``image`` columns: each query's page is its row's). Page images are
written once as files (their original bytes) under ``image_dir`` so that indexing reads them like any image.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

from .dataset import CorpusRow, DatasetError, EvalDataset, Query

_V2_PARTS = ("corpus", "queries", "qrels")
_SKIP_COLUMNS = frozenset({"query-id", "query_id", "_id", "query", "text", "image", "image_filename", "answer",
                           "corpus-id", "page"})


def is_hf_folder(root: Path) -> bool:
    return (root / "dataset_dict.json").is_file() or (root / "dataset_info.json").is_file() or all(
        (root / p / "dataset_info.json").is_file() for p in _V2_PARTS)


def load_hf_dataset(root: Path, image_dir: Path | None = None) -> EvalDataset:
    try:
        import datasets
    except ImportError:
        raise DatasetError(root, "a saved HF dataset needs the `datasets` package: "
                                 "pip install 'docrag[eval]'") from None
    image_dir = image_dir or root.parent / f"{root.name}.images"
    try:
        if all((root / p / "dataset_info.json").is_file() for p in _V2_PARTS):
            parts = {p: datasets.load_from_disk(str(root / p)) for p in _V2_PARTS}
        else:
            loaded = datasets.load_from_disk(str(root))
            parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"test": loaded}
    except Exception as e:  # datasets raises many kinds for a broken folder
        raise DatasetError(root, f"cannot load the saved HF dataset: {str(e).splitlines()[0]}") from None
    if all(p in parts for p in _V2_PARTS):
        return _v2(root, parts, image_dir)
    split = parts.get("test") or (next(iter(parts.values())) if len(parts) == 1 else None)
    if split is None:
        raise DatasetError(root, f"expected splits corpus/queries/qrels or test, found {', '.join(parts)}")
    return _v1(root, split, image_dir)


def _v2(root: Path, parts: dict[str, Any], image_dir: Path) -> EvalDataset:
    import datasets

    corpus_ds = parts["corpus"]
    _need(root, "corpus", corpus_ds, ("corpus-id", "image"))
    _need(root, "queries", parts["queries"], ("query-id", "query"))
    _need(root, "qrels", parts["qrels"], ("query-id", "corpus-id", "score"))
    corpus_ds = corpus_ds.cast_column("image", datasets.Image(decode=False))
    corpus = [CorpusRow(str(r["corpus-id"]), _write_image(image_dir, str(r["corpus-id"]), r["image"], root))
              for r in corpus_ds]
    queries = [Query(str(r["query-id"]), str(r["query"]), _subsets(r)) for r in parts["queries"]]
    qrels: dict[str, dict[str, int]] = {}
    for r in parts["qrels"]:
        qrels.setdefault(str(r["query-id"]), {})[str(r["corpus-id"])] = int(r["score"])
    return EvalDataset(root, corpus, queries, qrels, "hf-vidore-v2")


def _v1(root: Path, split: Any, image_dir: Path) -> EvalDataset:
    import datasets

    _need(root, "test", split, ("query", "image"))
    split = split.cast_column("image", datasets.Image(decode=False))
    corpus: dict[str, CorpusRow] = {}
    queries, qrels = [], {}
    for i, r in enumerate(split):
        image = r["image"]
        key = r.get("image_filename") or hashlib.sha256(image.get("bytes") or b"").hexdigest()[:16] or f"row{i}"
        if key not in corpus:
            cid = f"p{len(corpus) + 1}"
            corpus[key] = CorpusRow(cid, _write_image(image_dir, cid, image, root))
        if isinstance(r["query"], str) and r["query"].strip():
            qid = f"q{len(queries) + 1}"
            queries.append(Query(qid, r["query"], _subsets(r)))
            qrels[qid] = {corpus[key].id: 1}
    return EvalDataset(root, list(corpus.values()), queries, qrels, "hf-vidore-v1")


def _need(root: Path, part: str, ds: Any, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DatasetError(root, f"split {part!r} lacks column(s) {', '.join(missing)}")


def _subsets(row: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in row.items() if k not in _SKIP_COLUMNS and isinstance(v, str) and v}


def _write_image(image_dir: Path, cid: str, image: dict[str, Any], root: Path) -> Path:
    """The row's image as a file (its own bytes and format), written once and reused."""
    from PIL import Image

    data = image.get("bytes")
    if data is None and image.get("path"):
        return Path(image["path"]).resolve()
    if not data:
        raise DatasetError(root, f"corpus row {cid!r} has no image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "png").lower()
    except Exception:
        raise DatasetError(root, f"corpus row {cid!r}: image bytes are not a readable image") from None
    ext = {"jpeg": "jpg", "tiff": "tif"}.get(fmt, fmt)
    if ext not in ("png", "jpg", "webp", "tif"):
        buf = io.BytesIO()
        with Image.open(io.BytesIO(data)) as im:
            im.convert("RGB").save(buf, format="PNG")
        data, ext = buf.getvalue(), "png"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", cid)[:80] + "-" + hashlib.sha256(data).hexdigest()[:12]
    path = image_dir / f"{name}.{ext}"
    if not path.is_file():
        image_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path.resolve()

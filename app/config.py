"""One typed configuration, read by the CLI, the web UI and the library alike.

Priority, lowest to highest: defaults here, ``docrag.toml`` (the working directory's, then the
index folder's), ``DOCRAG_*`` environment variables, explicit overrides (CLI flags).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Config:
    index_dir: Path = Path(".docrag")
    # none | auto | a checkpoint folder | a hub id. auto: the configured model when it can run
    # (GPU, or a local folder), else text-only indexing.
    encoder: str = "auto"
    auto_encoder: str = "moca-embed/MoCa-Qwen25VL-3B"
    processor: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    token_budget: int | None = None
    renderer: str = "pymupdf"
    dpi: int = 144
    max_page_pixels: int = 2_500_000
    page_format: str = "webp"  # webp | jpeg (faster, larger) | png (lossless)
    webp_method: int = 0  # libwebp effort 0 (fastest) .. 6 (smallest)
    page_store: str = "thumbnail"  # none | thumbnail (~7 KiB/page) | full (~185 KiB/page); see README
    index_workers: int | None = None  # render processes for `docrag index` (None: the CPUs available)
    page_cache_mb: int = 1024  # cap of the on-demand page-image cache under the index folder
    batch_pages: int = 16
    qdrant_url: str | None = None
    qdrant_collection: str = "docrag"
    top_k: int = 5
    mode: str = "auto"  # visual | text | dense | hybrid | auto (hybrid when visual or dense vectors exist)
    # BM25 stemmer/stop-word language of a new index (Qdrant's names: english, french, japanese, ...; unset:
    # english, or an existing index's own; another than an index's own is refused). CJK runs are always
    # indexed as character bigrams.
    bm25_language: str | None = None
    # OCR for pages whose text layer is empty or garbage (indexing/ocr.py): auto | always | never
    ocr: str = "auto"
    ocr_lang: str = "eng"  # Tesseract language codes joined by "+": "eng+fra+jpn"
    ocr_engine: str = "tesseract"  # tesseract (Debian tesseract-ocr) | rapidocr (pip install docrag[ocr])
    ocr_workers: int = 2  # pages OCR'd at once, one engine process each
    # Dense text vector (app/textenc/): none | auto | builtin (the built-in all-MiniLM-L6-v2-int8) | a
    # sentence-transformers folder or hub id. auto: the index's own; a new index gets the built-in model.
    text_encoder: str = "auto"
    # Hybrid fusion, done by Qdrant in one query: weighted RRF over the BM25 (text), dense text (dense) and
    # visual prefetches. Qdrant scores a source's rank r as 1/(k - 1 + r / weight); weight 0 leaves a source out.
    # k, the BM25 and the dense weight are `docrag eval calibrate`'s choice on dev-v1's tuning half (human-written
    # questions over real manuals; benchmarks/quality.py, README "Text retrieval"): held-out nDCG@5 0.698 against
    # 0.626 for the old k=1 / dense 0.125, which synthetic `eval build` queries had picked. weight_visual unset:
    # the weight a training run calibrated for the index's encoder (docrag_encoder.json), else 1.
    rrf_k: int = 2
    weight_text: float = 2.0
    weight_dense: float = 1.0
    weight_visual: float | None = None
    # Reranking after retrieval: none | cross-encoder:<folder or hub id> (sentence-transformers CrossEncoder over
    # page text) | llm (the configured vision-language LLM orders the page images, one call). Off by default.
    rerank: str = "none"
    rerank_top_n: int = 20  # hits the reranker reorders
    lock_timeout_s: float = 10.0
    # Answers (`docrag ask`, the UI): which LLM. none | auto | openai | transformers. auto: openai when
    # llm_base_url (or $OPENAI_BASE_URL) is set, else none. The API key comes from the environment only.
    llm: str = "auto"
    llm_base_url: str | None = None  # an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1
    llm_model: str | None = None  # the endpoint's model name, or a transformers folder / hub id
    ask_top_k: int = 3  # pages sent to the LLM
    llm_timeout_s: float = 60.0
    llm_max_tokens: int = 512
    llm_image_max_side: int = 1024  # page images are downscaled to this many pixels on the long side
    llm_text_chars: int = 1500  # characters of each page's text layer sent beside its image
    # Web UI (`docrag serve`).
    ui_host: str = "127.0.0.1"
    ui_port: int = 7860
    upload_max_mb: float = 50.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def qdrant_api_key(self) -> str | None:
        # Secrets come from the environment only, never from a file in the repo.
        return os.environ.get("QDRANT_API_KEY") or None

    @property
    def llm_api_key(self) -> str | None:
        return os.environ.get("DOCRAG_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name != "extra"}


def _coerce(name: str, value: Any) -> Any:
    kind = FIELDS[name].type
    if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null") and "None" in kind):
        return None
    if kind == "Path":
        return Path(value).expanduser()
    if kind.startswith("int"):
        return int(value)
    if kind.startswith("float"):
        return float(value)
    return str(value)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: invalid config file: {e}") from e
    data = data.get("docrag", data)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown setting(s): {', '.join(unknown)}")
    return data


def load_config(overrides: dict[str, Any] | None = None, cwd: Path | None = None) -> Config:
    """Build the effective configuration (see module docstring for the order)."""
    cwd = cwd or Path.cwd()
    values: dict[str, Any] = {}
    values.update(_read_toml(cwd / "docrag.toml"))
    env = {name: os.environ[f"DOCRAG_{name.upper()}"] for name in FIELDS if f"DOCRAG_{name.upper()}" in os.environ}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    index_dir = Path(given.get("index_dir") or env.get("index_dir") or values.get("index_dir") or Config.index_dir)
    if not index_dir.is_absolute():
        index_dir = cwd / index_dir
    values.update(_read_toml(index_dir / "docrag.toml"))
    values.update(env)
    values.update(given)
    values["index_dir"] = index_dir
    return Config(**{k: _coerce(k, v) for k, v in values.items()})


def write_settings(path: Path, values: dict[str, Any], comment: str | None = None) -> None:
    """Set top-level keys of a ``docrag.toml`` (created if missing), keeping every other line and comment.

    Each key's existing line is replaced in place; new keys go at the end of the top-level table (before the
    first ``[table]``, or inside ``[docrag]`` when the file uses that table), under ``comment``.
    """
    for key in values:
        if key not in FIELDS:
            raise ValueError(f"unknown setting {key}")
    lines = path.read_text().splitlines() if path.is_file() else []
    _read_toml(path)  # refuse to edit a file that does not parse
    section = next((i for i, line in enumerate(lines) if line.strip().startswith("[")), len(lines))
    if section < len(lines) and lines[section].strip() == "[docrag]":
        start = section + 1
        section = next((i for i in range(start, len(lines)) if lines[i].strip().startswith("[")), len(lines))
    else:
        start = 0
    pending = dict(values)
    for i in range(start, section):
        key = lines[i].split("=", 1)[0].strip() if "=" in lines[i] and not lines[i].lstrip().startswith("#") else ""
        if key in pending:
            lines[i] = f"{key} = {_toml_value(pending.pop(key))}"
    if pending:
        block = ([f"# {comment}"] if comment else []) + [f"{k} = {_toml_value(v)}" for k, v in pending.items()]
        while section > start and not lines[section - 1].strip() and section == len(lines):
            section -= 1  # no blank lines piling up at the end
        lines[section:section] = block
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

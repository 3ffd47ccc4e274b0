"""A sentence-transformers model as the dense text encoder (`docrag index --text-encoder FOLDER_OR_HUB_ID`).

Long pages are cut into windows of the model's `max_seq_length` tokens (the tokenizer's own offsets, so no
word is split), every window is embedded, and a page's vector is the L2-normalised mean of its windows.
Queries and documents go through `encode_query` / `encode_document`, so a model with prompts ("query: ",
"passage: ") gets the right one on each side. Offline: a local folder; a hub id only with a network.

`init_tiny_text_encoder` builds a tiny randomly initialised BERT with a WordPiece vocabulary trained on given
text, saved as a sentence-transformers folder: for tests and smoke runs, like `docrag train init --preset tiny`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import TextEncoderUnavailable

MAX_CHUNKS_PER_PAGE = 16  # a 10k-word page costs at most 16 windows


class SentenceTextEncoder:
    """`TextEmbedder` (indexing.text_dense) over a sentence-transformers model, plus `encode_queries`."""

    def __init__(self, name: str, *, device: str | None = None, batch_size: int = 32) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise TextEncoderUnavailable("--text-encoder needs sentence-transformers: pip install 'docrag[text]'") \
                from None
        from moca_train.checkpoint import quiet_transformers

        try:
            with quiet_transformers():  # no "Loading weights" bar in the middle of docrag's own output
                self.model = SentenceTransformer(str(name), device=None if device in (None, "auto") else device)
        except (OSError, ValueError) as e:
            raise TextEncoderUnavailable(f"cannot load text encoder {name}: {str(e).splitlines()[0]}") from e
        self.name = str(name)
        self.batch_size = batch_size
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self._dim = int(get_dim())
        self.max_tokens = max(8, int(self.model.max_seq_length or 256) - 2)  # room for [CLS] and [SEP]

    @property
    def dim(self) -> int:
        return self._dim

    def chunks(self, text: str) -> list[str]:
        """The page cut into windows of at most `max_tokens` tokens (whole text when it fits)."""
        tok = self.model.tokenizer
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
        offsets = enc["offset_mapping"]
        if len(offsets) <= self.max_tokens:
            return [text]
        out = []
        for i in range(0, len(offsets), self.max_tokens):
            window = offsets[i : i + self.max_tokens]
            out.append(text[window[0][0] : window[-1][1]])
            if len(out) == MAX_CHUNKS_PER_PAGE:
                break
        return out

    def _encode(self, texts: list[str], query: bool) -> np.ndarray:
        fn = getattr(self.model, "encode_query" if query else "encode_document", None) or self.model.encode
        vecs = fn(texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True,
                  show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), self._dim)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised vector per page text: the mean of its windows' embeddings."""
        if not texts:
            return np.zeros((0, self._dim), np.float32)
        windows: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            for chunk in self.chunks(text):
                windows.append(chunk)
                owner.append(i)
        vecs = self._encode(windows, query=False)
        pooled = np.zeros((len(texts), self._dim), np.float32)
        np.add.at(pooled, np.asarray(owner), vecs)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode(list(queries), query=True)


def _tiny_bert(hf_dir: Path, texts: Sequence[str], vocab_size: int, hidden: int, layers: int, max_seq_length: int):
    """A WordPiece tokenizer trained on `texts` (saved to `hf_dir`) and a matching tiny `BertConfig`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(list(texts), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_seq_length)
    fast.save_pretrained(hf_dir)
    return BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=max_seq_length + 2,
                      pad_token_id=fast.pad_token_id)


def init_tiny_text_encoder(out: Path | str, texts: Sequence[str], *, vocab_size: int = 3000, hidden: int = 32,
                           layers: int = 2, max_seq_length: int = 64, seed: int = 0) -> Path:
    """Write a tiny random BERT sentence-transformers model (WordPiece trained on `texts`) to `out`."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel

    try:  # sentence-transformers >= 6 moved the modules; older releases (the GPU machines) have the old path
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer

    out = Path(out)
    hf_dir = out / "bert"
    config = _tiny_bert(hf_dir, texts, vocab_size, hidden, layers, max_seq_length)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(hf_dir)
    model = SentenceTransformer(modules=[Transformer(str(hf_dir), max_seq_length=max_seq_length),
                                         Pooling(hidden, "mean")], device="cpu")
    model.save(str(out))
    return out


def init_tiny_cross_encoder(out: Path | str, texts: Sequence[str], *, vocab_size: int = 3000, hidden: int = 32,
                            layers: int = 2, max_seq_length: int = 128, seed: int = 0) -> Path:
    """Write a tiny random BERT cross-encoder (one relevance logit; sentence-transformers `CrossEncoder` loads the
    folder) to `out`: for tests and smoke runs of `rerank = "cross-encoder:OUT"`."""
    import torch
    from transformers import BertForSequenceClassification

    out = Path(out)
    config = _tiny_bert(out, texts, vocab_size, hidden, layers, max_seq_length)
    config.num_labels = 1
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(out)
    return out

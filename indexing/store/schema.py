"""The index's schema record (version, dims, BM25 language and CJK mode) and the errors it raises."""

from __future__ import annotations

from typing import Any

from indexing.bm25 import DEFAULT_LANGUAGE
from indexing.tokenize import CJK_NONE, DEFAULT_CJK

SCHEMA_VERSION = 1
SCHEMA_FILE = "docrag_schema.json"


class DimensionMismatch(ValueError):
    """The index's dense vectors have another dimension than the encoder's."""

    def __init__(self, index_dim: int, given_dim: int, what: str = "") -> None:
        self.index_dim = index_dim
        self.given_dim = given_dim
        super().__init__(
            f"index was built with {what}dim {index_dim}, {what}encoder gives {given_dim}: "
            "re-index into a new index folder/collection, or use the encoder the index was built with"
        )


class StoreError(RuntimeError):
    """The store is unusable as asked (closed, not a docrag index, incompatible schema)."""


def check_schema(schema: dict[str, Any], where: str) -> None:
    version = schema.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise StoreError(f"{where} has schema version {version}, newer than this docrag ({SCHEMA_VERSION})")


def resolve_language(stored: str | None, asked: str | None, where: str) -> str:
    if stored and asked and stored != asked:
        raise StoreError(f"{where} was built with BM25 language {stored!r}, not {asked!r}")
    return stored or asked or DEFAULT_LANGUAGE


def resolve_cjk(schema: dict[str, Any], exists: bool) -> str:
    """The CJK tokenisation of an index: recorded, else "none" for an index made before it was recorded."""
    if not exists:
        return DEFAULT_CJK
    return str(schema.get("bm25_cjk") or CJK_NONE)

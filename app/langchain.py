"""`DocRagRetriever`: docrag's search as a standard LangChain retriever (`[langchain]` extra).

    retriever = DocRagRetriever(index_dir=".docrag", mode="text", top_k=3)
    docs = retriever.invoke("inverter maintenance")   # list[langchain_core.documents.Document]

Each Document's `page_content` is the page's text layer; `metadata` holds `source` (document path),
`page`, `score`, `image` (the page image's path), `mode`, `snippet` (a passage around the query's matched terms,
which are **marked**), `matched_terms` and `highlights` (their boxes on the page, `[{box, term}]`, 0-1 of the
page). The store is kept open between queries and
released whenever a `docrag index` elsewhere waits for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr

from .config import load_config
from .page_image import hit_image
from .service import DocRag


class DocRagRetriever(BaseRetriever):
    """Configured like the CLI: `index_dir`, `mode` (text | dense | visual | hybrid | auto), `top_k`, `doc` filter,
    `encoder`; or pass a ready `DocRag` as `rag`. Per call, `invoke(q, top_k=...)` (or `k=`) and `doc=`
    override them."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index_dir: str | None = None
    mode: str | None = None
    top_k: int | None = None
    doc: str | None = Field(default=None, description="Only documents whose path contains this.")
    encoder: str | None = None
    rag: DocRag | None = Field(default=None, exclude=True)
    _rag: DocRag | None = PrivateAttr(default=None)

    def _service(self) -> DocRag:
        if self._rag is None:
            self._rag = self.rag or DocRag(load_config({"index_dir": self.index_dir, "encoder": self.encoder}))
            self._rag.keep_store_open()
        return self._rag

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None, top_k: int | None = None, doc: str | None = None,
                                **kwargs: Any) -> list[Document]:
        rag = self._service()
        hits = rag.search(query, top_k=top_k or k or self.top_k, mode=self.mode, doc=doc or self.doc)
        mode = rag.resolve_mode(self.mode or "auto")
        return [Document(page_content=h.text or "", metadata={
            "source": h.doc_path, "page": h.page, "score": float(h.score),
            "image": hit_image(rag.config.index_dir, h)[0], "mode": mode, "title": h.title,
            "snippet": h.snippet, "matched_terms": h.matched_terms, "highlights": h.highlights,
        }) for h in hits]

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       k: int | None = None, top_k: int | None = None, doc: str | None = None,
                                       **kwargs: Any) -> list[Document]:
        # The store and the encoder are synchronous: run them off the event loop.
        return await asyncio.to_thread(self._get_relevant_documents, query, run_manager=run_manager.get_sync(),
                                       k=k, top_k=top_k, doc=doc, **kwargs)

    def close(self) -> None:
        if self._rag is not None:
            self._rag.close()

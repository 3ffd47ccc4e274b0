"""DocRagRetriever: LangChain's own standard retriever suite, an LCEL chain, the async path (real index)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_tests.integration_tests import RetrieversIntegrationTests

from app import DocRag, DocRagRetriever

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, debian_pdfs) -> Path:
    docs = tmp_path_factory.mktemp("docs")
    shutil.copy(ROOT / "examples" / "solar-maintenance.pdf", docs)
    shutil.copy(debian_pdfs["sample-plain.pdf"], docs)
    idx = tmp_path_factory.mktemp("lc") / "idx"
    DocRag(index_dir=idx, encoder="none", dpi=48).index([docs])
    return idx


class TestDocRagRetrieverStandard(RetrieversIntegrationTests):
    # The suite's async test runs under pytest-asyncio (a langchain-tests dependency); the mark reaches its
    # sync tests too, which pytest-asyncio merely warns about.
    pytestmark = [pytest.mark.asyncio, pytest.mark.filterwarnings("ignore:The test <Function")]

    @pytest.fixture(autouse=True)
    def _index(self, index_dir):
        type(self).index_dir = index_dir

    @property
    def retriever_constructor(self) -> type[DocRagRetriever]:
        return DocRagRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index_dir": str(self.index_dir), "encoder": "none", "mode": "text", "top_k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "answer sheet"

    @property
    def num_results_arg_name(self) -> str:
        return "top_k"


def test_documents_carry_page_text_and_metadata(index_dir):
    retriever = DocRagRetriever(index_dir=str(index_dir), encoder="none", mode="text", top_k=2)
    try:
        docs = retriever.invoke("isolation fault after heavy rain")
        assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
        top = docs[0]
        assert "isolation fault" in top.page_content
        assert top.metadata["source"].endswith("solar-maintenance.pdf") and top.metadata["page"] in (1, 2)
        assert top.metadata["mode"] == "text" and top.metadata["score"] > 0
        assert Path(top.metadata["image"]).is_file() and Path(top.metadata["image"]).is_relative_to(index_dir)
        only = retriever.invoke("answer sheet", doc="solar")  # filters like the CLI's --filter doc=
        assert all(d.metadata["source"].endswith("solar-maintenance.pdf") for d in only)
        assert retriever._rag._shared.opens == 1  # the store stayed open between the two queries
    finally:
        retriever.close()


def test_lcel_chain(index_dir):
    retriever = DocRagRetriever(index_dir=str(index_dir), encoder="none", mode="text", top_k=1)
    prompt = ChatPromptTemplate.from_messages([("human", "Context:\n{context}\n\nQuestion: {question}")])

    def format_docs(docs: list[Document]) -> str:
        return "\n".join(f"[{d.metadata['page']}] {d.page_content}" for d in docs)

    # The LLM step is any Runnable; here one that returns the prompt it was given, to check what reached it.
    chain = ({"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt
             | RunnableLambda(lambda value: value.to_messages()[0].content))
    try:
        out = chain.invoke("fan filter every spring")
        assert "Question: fan filter every spring" in out and "Check the fan filter every spring" in out
        outs = chain.batch(["fan filter", "warranty serial number"])
        assert "serial number" in outs[1]
    finally:
        retriever.close()


def test_async_path_runs_concurrently(index_dir):
    retriever = DocRagRetriever(index_dir=str(index_dir), encoder="none", mode="text", top_k=2)

    async def main():
        return await asyncio.gather(retriever.ainvoke("inverter"), retriever.ainvoke("answer sheet", top_k=3))

    try:
        a, b = asyncio.run(main())
        assert a[0].metadata["source"].endswith("solar-maintenance.pdf") and len(b) == 3
    finally:
        retriever.close()

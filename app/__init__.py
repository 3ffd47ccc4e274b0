"""docrag's composition layer: configuration, the DocRag service, answers, the LangChain retriever, the CLI.

>>> from app import DocRag
>>> rag = DocRag(index_dir="./.docrag")

Public names load on first use: `docrag --help` must not pay for torch, Qdrant or LangChain.
"""

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "service": ("DocRag", "EncoderUnavailable", "hit_to_dict"),
    "config": ("Config", "load_config"),
    "answer": ("Answer", "AnswerStream", "Citation"),
    "llm": ("LLM", "LLMError", "LLMNotConfigured", "Message", "make_llm"),
    "langchain": ("DocRagRetriever",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [
    "LLM", "Answer", "AnswerStream", "Citation", "Config", "DocRag", "DocRagRetriever", "EncoderUnavailable",
    "LLMError", "LLMNotConfigured", "Message", "hit_to_dict", "load_config", "make_llm",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


if TYPE_CHECKING:
    from .answer import Answer, AnswerStream, Citation
    from .config import Config, load_config
    from .langchain import DocRagRetriever
    from .llm import LLM, LLMError, LLMNotConfigured, Message, make_llm
    from .service import DocRag, EncoderUnavailable, hit_to_dict

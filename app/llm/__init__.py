"""Answer models behind one small interface (`LLM.stream(messages)`): an OpenAI-compatible endpoint
(`openai`) or a local transformers vision-language model (`transformers`). `make_llm(config)` picks one."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .base import HOW_TO_CONFIGURE, LLM, ImagePart, LLMError, LLMNotConfigured, Message

if TYPE_CHECKING:
    from app.config import Config

__all__ = ["HOW_TO_CONFIGURE", "LLM", "ImagePart", "LLMError", "LLMNotConfigured", "Message", "describe_llm",
           "make_llm"]

BACKENDS = ("none", "auto", "openai", "transformers")


def _base_url(config: Config) -> str | None:
    return config.llm_base_url or os.environ.get("OPENAI_BASE_URL") or None


def _backend(config: Config) -> str:
    choice = (config.llm or "auto").lower()
    if choice not in BACKENDS:
        raise ValueError(f"unknown llm {config.llm!r}; choose one of {', '.join(BACKENDS)}")
    if choice == "auto":
        return "openai" if _base_url(config) else "none"
    return choice


def make_llm(config: Config) -> LLM | None:
    """The configured LLM, or None when none is configured (see `Config.llm`)."""
    backend = _backend(config)
    if backend == "none":
        return None
    if backend == "openai":
        url = _base_url(config)
        if not url:
            raise ValueError("llm = openai needs llm_base_url (or $DOCRAG_LLM_BASE_URL / $OPENAI_BASE_URL)")
        from .openai import OpenAIChat

        return OpenAIChat(url, config.llm_model or os.environ.get("OPENAI_MODEL"), config.llm_api_key,
                          timeout_s=config.llm_timeout_s, max_tokens=config.llm_max_tokens)
    if not config.llm_model:
        raise ValueError("llm = transformers needs llm_model (a folder or hub id)")
    from .transformers import TransformersVLM

    return TransformersVLM(config.llm_model, device=config.device, dtype=config.dtype,
                           max_new_tokens=config.llm_max_tokens)


def describe_llm(config: Config) -> str | None:
    """What `make_llm` would use, without loading it (for status displays)."""
    backend = _backend(config)
    if backend == "none":
        return None
    if backend == "openai":
        return f"{config.llm_model or os.environ.get('OPENAI_MODEL') or 'default'} @ {_base_url(config)}"
    return f"transformers: {config.llm_model}"

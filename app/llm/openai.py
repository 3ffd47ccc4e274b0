"""Any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server, hosted APIs), streamed over SSE.

Plain `httpx` (already a dependency of qdrant-client), not the `openai` package: one POST to
`{base_url}/chat/completions` with `stream: true`, images as base64 `data:` URLs, and the server-sent
events read line by line (`data: {...}` chunks until `data: [DONE]`).
"""

from __future__ import annotations

import base64
import functools
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from .base import ImagePart, LLMError, Message


def image_data_url(part: ImagePart, max_side: int | None) -> str:
    """The page image as a `data:image/jpeg;base64,...` URL, downscaled to `max_side` on its long side.

    Cached by file identity: decoding, resizing and re-encoding a page costs ~100 ms, and the same pages come
    back for follow-up questions (page images never change in place; a changed file has a new path).
    """
    try:
        st = part.path.stat()
        key = (str(part.path), st.st_mtime_ns, st.st_size, max_side)
    except OSError:
        key = (str(part.path), 0, 0, max_side)
    return _encoded(key)


@functools.lru_cache(maxsize=64)
def _encoded(key: tuple[str, int, int, int | None]) -> str:
    image = ImagePart(Path(key[0])).load(key[3])
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_openai_messages(messages: list[Message], image_max_side: int | None) -> list[dict[str, Any]]:
    # Pages are decoded and encoded in parallel (Pillow releases the GIL): the first token comes sooner.
    parts = [p for m in messages for p in m.images]
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(parts)))) as pool:
        urls = dict(zip(parts, pool.map(lambda p: image_data_url(p, image_max_side), parts), strict=True))
    out = []
    for m in messages:
        if not m.images:
            out.append({"role": m.role, "content": m.text})
            continue
        content = []
        for p in m.parts:
            if isinstance(p, ImagePart):
                content.append({"type": "image_url", "image_url": {"url": urls[p]}})
            elif p:
                content.append({"type": "text", "text": p})
        out.append({"role": m.role, "content": content})
    return out


class OpenAIChat:
    """`stream(messages)` against `base_url` (e.g. http://localhost:8000/v1) with `model`."""

    def __init__(self, base_url: str, model: str | None, api_key: str | None = None, *, timeout_s: float = 60.0,
                 max_tokens: int = 512, temperature: float = 0.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model or "default"
        self.name = f"{self.model} @ {self.base_url}"
        self.api_key, self.timeout_s = api_key, timeout_s
        self.max_tokens, self.temperature = max_tokens, temperature

    def request_body(self, messages: list[Message], image_max_side: int | None = None) -> dict[str, Any]:
        return {"model": self.model, "messages": to_openai_messages(messages, image_max_side), "stream": True,
                "max_tokens": self.max_tokens, "temperature": self.temperature}

    def stream(self, messages: list[Message], image_max_side: int | None = None) -> Iterator[str]:
        body = self.request_body(messages, image_max_side)
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url}/chat/completions"
        try:
            # trust_env=False: never route a local endpoint through a proxy from the environment.
            with httpx.Client(timeout=self.timeout_s, trust_env=False) as client, \
                    client.stream("POST", url, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    detail = response.read().decode("utf-8", "replace").strip().replace("\n", " ")[:200]
                    raise LLMError(f"LLM endpoint {url} answered HTTP {response.status_code}: {detail}")
                yield from _sse_chunks(response.iter_lines(), url)
        except httpx.TimeoutException:
            raise LLMError(f"LLM endpoint {url} timed out after {self.timeout_s:g} s") from None
        except httpx.HTTPError as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LLMError(f"cannot reach LLM endpoint {url}: {reason}") from None


def _sse_chunks(lines: Iterator[str], url: str) -> Iterator[str]:
    for line in lines:
        if not line.startswith("data:"):
            continue  # comments (": ping"), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            raise LLMError(f"LLM endpoint {url} sent a malformed stream chunk: {data[:80]!r}") from None
        if "error" in event:
            raise LLMError(f"LLM endpoint {url} reported an error: {str(event['error'])[:200]}")
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text

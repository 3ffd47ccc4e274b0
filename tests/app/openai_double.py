"""A TEST DOUBLE for a remote service: a small local OpenAI-compatible chat server (stdlib http.server).

Real LLM endpoints (vLLM, Ollama, hosted APIs) cannot run here, so tests and benchmarks start this one. It
checks the request format a real endpoint relies on (model, messages, image parts as base64 data URLs that
decode to images, `stream: true`) and answers 400 naming what is wrong; otherwise it streams `reply`
back as server-sent events, one chunk per `chunk_delay_s`, ending with `data: [DONE]`.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

Reply = Callable[[dict], Iterable[str]]


def default_reply(body: dict) -> list[str]:
    return ["According to the first page", " [1], the answer", " is there."]


def check_request(body: dict) -> str | None:
    """What is wrong with a chat request (None when it has the format a real endpoint expects)."""
    if body.get("stream") is not True:
        return "stream must be true"
    if not body.get("model"):
        return "model missing"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages missing"
    for m in messages:
        if m.get("role") not in ("system", "user", "assistant"):
            return f"bad role {m.get('role')!r}"
        content = m.get("content")
        if isinstance(content, str):
            continue
        for part in content:
            if part.get("type") == "text":
                continue
            if part.get("type") != "image_url":
                return f"bad content part type {part.get('type')!r}"
            url = part["image_url"]["url"]
            if not url.startswith("data:image/") or ";base64," not in url:
                return "image_url is not a base64 data URL"
            Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).verify()
    return None


class OpenAIDouble:
    """`with OpenAIDouble(reply=...) as srv:` — base URL in `srv.base_url`, requests seen in `srv.requests`."""

    def __init__(self, reply: Reply = default_reply, chunk_delay_s: float = 0.0, api_key: str | None = None) -> None:
        self.reply, self.chunk_delay_s, self.api_key = reply, chunk_delay_s, api_key
        self.requests: list[dict] = []
        self.errors: list[str] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _refuse(self, code: int, reason: str) -> None:
                double.errors.append(reason)
                data = json.dumps({"error": {"message": reason}}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._refuse(404, f"no route {self.path}")
                if double.api_key and self.headers.get("Authorization") != f"Bearer {double.api_key}":
                    return self._refuse(401, "bad api key")
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                double.requests.append(body)
                try:
                    problem = check_request(body)
                except Exception as e:  # an undecodable image
                    problem = f"bad image: {e}"
                if problem:
                    return self._refuse(400, problem)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for i, text in enumerate(double.reply(body)):
                    if double.chunk_delay_s:
                        time.sleep(double.chunk_delay_s)
                    event = {"id": "chatcmpl-test", "object": "chat.completion.chunk",
                             "choices": [{"index": 0, "delta": {"content": text} if i else
                                          {"role": "assistant", "content": text}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OpenAIDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

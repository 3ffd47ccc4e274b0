"""A real `docrag serve` process for the UI tests (started, waited for, stopped)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
UPLOAD_MAX_MB = 1  # sample-plain.pdf (130 kB) fits; the oversize test sends 1.5 MB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, index_dir: Path, log: Path, *args: str, env: dict | None = None) -> None:
        self.index_dir, self.port = index_dir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("DOCRAG_LLM", "OPENAI_", "GRADIO_"))}
        self.log = log
        self._log_file = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ui.cli", "serve", "--index-dir", str(index_dir), "--port", str(self.port),
             "--encoder", "none", *args],
            cwd=ROOT, stdout=self._log_file, stderr=subprocess.STDOUT, text=True,
            env={**clean, "DOCRAG_DPI": "48", "DOCRAG_UPLOAD_MAX_MB": str(UPLOAD_MAX_MB), **(env or {})},
        )

    def wait_ready(self, timeout: float = 120) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/", timeout=2, trust_env=False).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready: {self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log_file.close()

"""Launching the web UI: offline, bound to 127.0.0.1 unless told otherwise, files served only from the
page store, Gradio's own temporary files kept inside the index folder."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from app import Config, DocRag

from .offline import go_offline

GRADIO_TMP = ".gradio-tmp"  # under the index folder (hidden: the indexer never walks into it)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth must be USER:PASSWORD")
    return user, password


def prepare_environment(index_dir: Path) -> None:
    go_offline()
    tmp = index_dir / GRADIO_TMP
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(tmp)  # uploads land inside the index folder, never in /tmp


def launch(config: Config, host: str, port: int, auth: str | None = None, *, block: bool = True):
    """Build and launch the app; returns the Blocks (with `block=False`, the server runs in a thread)."""
    credentials = parse_auth(auth)
    if not is_loopback(host) and credentials is None:
        print(f"warning: serving on {host} without --auth: anyone who can reach this address can read and "
              "add documents", file=sys.stderr, flush=True)
    index_dir = config.index_dir
    index_dir.mkdir(parents=True, exist_ok=True)
    prepare_environment(index_dir)
    from .app import build_app  # imports gradio: after the environment is set

    rag = DocRag(config, keep_open=True)
    # Resolved once, before requests arrive from several threads (and the first search is not slower).
    rag.encoder(for_query=True)
    text_encoder = rag.text_encoder()  # the dense text model, ready before the first query (not loaded by it)
    if text_encoder is not None:
        if hasattr(text_encoder, "warm"):
            text_encoder.warm()
        print(f"text model {text_encoder.name} loaded", file=sys.stderr, flush=True)
    rag.llm()
    rag.reranker()
    max_bytes = int(config.upload_max_mb * 2**20)
    demo = build_app(rag, max_bytes)
    pages = index_dir / "pages"  # page_store = "full"
    cache = index_dir / "cache"  # pages rendered on demand and thumbnails (indexing.page_images)
    pages.mkdir(exist_ok=True)
    cache.mkdir(exist_ok=True)
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host, server_port=port, auth=credentials, share=False, inbrowser=False, show_error=False,
        max_file_size=max_bytes, allowed_paths=[str(pages), str(cache)],
        blocked_paths=[str(index_dir / "uploads"), str(index_dir / "qdrant"), str(index_dir / "manifest.sqlite")],
        prevent_thread_lock=not block, quiet=False, ssr_mode=False, footer_links=["api"],
    )
    return demo

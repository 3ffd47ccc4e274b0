"""The Gradio Blocks: upload + background indexing, search gallery, full-page view, streamed answers with
clickable citations, status; and the named API endpoints `search`, `ask`, `status` for `gradio_client`.

A thin layer: every action is a `DocRag` call (search, ask, status) or an upload handed to `IndexingJobs`.
"""

from __future__ import annotations

import contextlib
import html
import time
from pathlib import Path
from typing import Any

import gradio as gr  # after ui/__init__ switched its outside calls off (ui.offline)

from app import DocRag, hit_to_dict
from app.llm import HOW_TO_CONFIGURE, LLMError, describe_llm

from .jobs import IndexingJobs
from .overlay import draw_highlights
from .uploads import UploadRefused, store_upload

MODES = ["auto", "hybrid", "visual", "text", "dense"]
ALL_DOCS = "(all documents)"


def _markdown_snippet(snippet: str) -> str:
    """A hit's snippet for Markdown: its text escaped, its **matched terms** kept bold."""
    from indexing.snippets import MARK

    parts = snippet.split(MARK)
    return "".join(f"**{_md_escape(p)}**" if i % 2 else _md_escape(p) for i, p in enumerate(parts))


def _md_escape(text: str) -> str:
    text = html.escape(text, quote=False)
    return "".join("\\" + c if c in "\\`*_{}[]()#+-!|~>" else c for c in text)


def _plain_marks(snippet: str) -> str:
    """A snippet for a plain-text caption (the gallery's): matched terms between « »."""
    from indexing.snippets import MARK

    parts = snippet.split(MARK)
    return "".join(f"«{p}»" if i % 2 else p for i, p in enumerate(parts))


def _error_line(e: BaseException) -> str:
    text = str(e).strip("'\"")
    return text.splitlines()[0] if text else type(e).__name__


class DocRagUI:
    """The handlers, bound to one `DocRag` (its store kept open) and one indexing queue."""

    def __init__(self, rag: DocRag, upload_max_bytes: int) -> None:
        self.rag = rag
        self.upload_max_bytes = upload_max_bytes
        self.jobs = IndexingJobs(rag)

    # ---- the API (typed: gr.api derives the endpoints' signatures from these) ---------------------
    # Errors a caller can cause reach gradio_client as one line (gr.Error), never as a bare "error".
    def search(self, query: str, top_k: int = 5, mode: str = "auto", doc: str = "") -> list[dict]:
        """Top pages for a query: [{doc, page, score, image, text, title}]."""
        try:
            hits = self.rag.search(query, top_k=int(top_k), mode=mode or None, doc=doc or None)
        except Exception as e:
            raise gr.Error(_error_line(e)) from None
        return [hit_to_dict(h, self.rag.config.index_dir) for h in hits]

    def _gallery_rows(self, query: str, top_k: int, mode: str, doc: str) -> list[dict]:
        """Rows with thumbnails: the full page is rendered only for the one the user opens (`on_select`)."""
        hits = self.rag.search(query, top_k=int(top_k), mode=mode or None, doc=doc or None)
        return [hit_to_dict(h, self.rag.config.index_dir, thumbnail=True) for h in hits]

    def ask(self, question: str, top_k: int = 3, mode: str = "auto", doc: str = "") -> dict:
        """Answer from the top pages: {answer, citations: [{n, doc, page, image, score}], pages}."""
        try:
            stream = self.rag.ask(question, top_k=int(top_k), mode=mode or None, doc=doc or None)
            return stream.result().as_dict()
        except Exception as e:
            raise gr.Error(_error_line(e)) from None

    def status(self) -> dict:
        """Documents, pages, encoder, LLM, and the indexing queue."""
        info: dict[str, Any] = dict(self.rag.status(missing_ok=True))
        info["llm"] = describe_llm(self.rag.config)
        p = self.jobs.snapshot()
        info["indexing"] = {"running": p.running, "pages_done": p.pages_done, "pages_total": p.pages_total,
                            "last": p.last_summary}
        return info

    # ---- UI events ---------------------------------------------------------------------------
    def on_upload(self, files: list[str] | None, progress=gr.Progress()):  # noqa: B008 - Gradio's idiom
        stored, refused = [], []
        for f in files or []:
            path = Path(f)
            try:
                stored.append(store_upload(path, path.name, self.rag.config.index_dir, self.upload_max_bytes))
            except UploadRefused as e:
                refused.append(str(e))
            finally:
                with contextlib.suppress(OSError):
                    path.unlink()  # Gradio's temporary copy: the index folder's uploads/ holds the file now
        self.jobs.submit([s.path for s in stored])
        lines = [f"refused {html.escape(r)}" for r in refused]
        while True:
            p = self.jobs.snapshot()
            if p.pages_total:
                progress((p.pages_done, p.pages_total), desc="indexing pages", unit="pages")
            # The file list is emptied: each upload hands over only its own files.
            yield self._progress_html(p, lines), self._status_md(), gr.update(choices=self._doc_choices()), None
            if not p.running:
                return
            time.sleep(0.25)

    def on_search(self, query: str, mode: str, top_k: float, doc: str):
        if not (query or "").strip():
            return [], [], "Type a query first."
        try:
            rows = self._gallery_rows(query, int(top_k), mode, "" if doc == ALL_DOCS else doc)
        except Exception as e:  # gr.Error from search(): its message is the one line
            return [], [], f"Search failed: {html.escape(getattr(e, 'message', None) or _error_line(e))}"
        gallery = [(r["image"], f"{Path(r['doc']).name} · p. {r['page']} · {r['score']:.3f} · "
                                f"{_plain_marks(r['snippet'])}") for r in rows]
        if not rows:
            return gallery, rows, "No matching pages."
        listing = "\n".join(f"{i}. **{html.escape(Path(r['doc']).name)}**, p. {r['page']}: "
                            f"{_markdown_snippet(r['snippet'])}" for i, r in enumerate(rows, 1))
        return gallery, rows, f"{len(rows)} page(s).\n\n{listing}"

    def on_select(self, rows: list[dict], evt: gr.SelectData):
        if not rows or evt.index is None or evt.index >= len(rows):
            return None, ""
        r = rows[evt.index]
        caption = f"**{html.escape(Path(r['doc']).name)}**, page {r['page']} (score {r['score']:.4f})"
        image, why = self._full_page(r)
        if image is None:  # the source changed or vanished and nothing full-size is stored: say so
            caption += f"\n\n{html.escape(why)}"
        elif r.get("highlights"):
            image = draw_highlights(image, r["highlights"])
            caption += f" · {len(r['highlights'])} match(es) highlighted"
        elif r.get("highlights_note"):  # found by its picture or meaning: no boxes, and the viewer says why
            caption += f"\n\n_{html.escape(r['highlights_note'])}_"
        return image, caption + (f"\n\n{_markdown_snippet(r['snippet'])}" if r.get("snippet") else "")

    def _full_page(self, row: dict) -> tuple[str | None, str]:
        from indexing.page_images import PageUnavailable, page_images

        try:
            return str(page_images(self.rag.config.index_dir, self.rag.config.page_cache_mb << 20).full(
                row["doc_hash"], row["page"])), ""
        except (PageUnavailable, ValueError) as e:
            return None, str(e)

    def on_ask(self, question: str, mode: str, top_k: float, doc: str):
        empty = gr.update(choices=[], value=None)
        if not (question or "").strip():
            yield "Type a question first.", empty, []
            return
        try:
            if self.rag.llm() is None:
                yield HOW_TO_CONFIGURE, empty, []
                return
            stream = self.rag.ask(question, top_k=min(int(top_k), 8), mode=None if mode == "auto" else mode,
                                  doc=None if doc in (ALL_DOCS, "", None) else doc)
            for _ in stream:
                yield stream.text, empty, []
            answer = stream.result()
        except Exception as e:  # LLMError, busy index, ...: one line, never a traceback
            prefix = "" if isinstance(e, LLMError) else "Ask failed: "
            yield prefix + _error_line(e), empty, []
            return
        cites = [{"label": f"[{c.n}] {Path(c.doc).name}, page {c.page}", "image": c.image, "doc": c.doc,
                  "page": c.page, "quote": c.quote, "boxes": c.boxes, "found": c.found} for c in answer.citations]
        yield answer.answer, gr.update(choices=[c["label"] for c in cites], value=None), cites

    def on_cite(self, label: str | None, cites: list[dict]):
        for c in cites or []:
            if c["label"] == label:
                name = html.escape(Path(c["doc"]).name)
                caption = f"**{name}**, page {c['page']} (cited {label.split()[0]})"
                image = c["image"]
                if image and c.get("boxes"):  # the quote the answer relies on, highlighted on the page
                    image = draw_highlights(image, [{"box": b} for b in c["boxes"]])
                    caption += f"\n\n> {html.escape(c['quote'])}"
                elif c.get("found") is False:
                    caption += f"\n\n_The quote given for it is not on this page: {html.escape(c['quote'])}_"
                return image, caption
        return gr.update(), gr.update()

    # ---- rendering ---------------------------------------------------------------------------
    def _doc_choices(self) -> list[str]:
        from indexing.manifest import MANIFEST_NAME, Manifest

        d = self.rag.config.index_dir
        if not (d / MANIFEST_NAME).exists():
            return [ALL_DOCS]
        with Manifest(d) as m:
            return [ALL_DOCS, *sorted({Path(r.path).name for r in m.documents()})]

    def _status_md(self) -> str:
        try:
            s = self.status()
        except Exception as e:
            return f"Status unavailable: {html.escape(_error_line(e))}"
        return (f"**Documents** {s['documents']} · **Pages** {s['pages']} (with visual vectors: "
                f"{s['pages_with_visual']}) · **Encoder** {html.escape(str(s['encoder'] or 'none (text only)'))} · "
                f"**LLM** {html.escape(str(s['llm'] or 'not configured'))}")

    @staticmethod
    def _progress_html(p, refused: list[str]) -> str:
        state = "indexing…" if p.running else ("done" if p.files_total else "idle")
        bar = (f'<progress id="index-progress" value="{p.pages_done}" max="{max(p.pages_total, 1)}">'
               f"</progress> {p.pages_done}/{p.pages_total} pages, {p.files_done}/{p.files_total} files, {state}")
        lines = [*refused, *(f"failed {html.escape(x)}" for x in p.problems)]
        if p.last_summary and not p.running:
            lines.append(html.escape(p.last_summary))
        return bar + "".join(f"<div class='docrag-line'>{line}</div>" for line in lines)


def build_app(rag: DocRag, upload_max_bytes: int) -> gr.Blocks:
    ui = DocRagUI(rag, upload_max_bytes)
    # Page images are served straight from the index's page store (not copied into Gradio's cache); no other
    # folder is (this replaces any earlier static paths of the process).
    pages = rag.config.index_dir / "pages"
    pages.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths([str(pages)])
    private = {"api_visibility": "private"}
    with gr.Blocks(title="docrag", analytics_enabled=False) as demo:
        gr.Markdown("## docrag — search your documents by their pages")
        status_md = gr.Markdown(elem_id="status")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    query = gr.Textbox(label="Query or question", elem_id="query", scale=4)
                    search_btn = gr.Button("Search", variant="primary", elem_id="search-btn", scale=1)
                    ask_btn = gr.Button("Ask", elem_id="ask-btn", scale=1)
                with gr.Row():
                    mode = gr.Radio(MODES, value="auto", label="Mode", elem_id="mode")
                    top_k = gr.Slider(1, 20, value=rag.config.top_k, step=1, label="Top-k", elem_id="top-k")
                    doc = gr.Dropdown(ui._doc_choices(), value=ALL_DOCS, label="Document", allow_custom_value=True,
                                      elem_id="doc-filter")
                search_msg = gr.Markdown(elem_id="search-msg")
                gallery = gr.Gallery(label="Pages", columns=5, height=320, allow_preview=False, elem_id="gallery")
                answer = gr.Markdown(label="Answer", elem_id="answer")
                citations = gr.Radio([], label="Citations (click to open the page)", elem_id="citations")
            with gr.Column(scale=2):
                page_caption = gr.Markdown(elem_id="page-caption")
                page_view = gr.Image(label="Page", type="filepath", interactive=False, elem_id="page-view")
                uploads = gr.File(label="Add PDFs or images", file_count="multiple", type="filepath",
                                  elem_id="upload")
                progress_html = gr.HTML(elem_id="index-status")
                refresh = gr.Button("Refresh status", size="sm")
        hits_state = gr.State([])
        cites_state = gr.State([])

        uploads.upload(ui.on_upload, uploads, [progress_html, status_md, doc, uploads], **private)
        inputs = [query, mode, top_k, doc]
        search_btn.click(ui.on_search, inputs, [gallery, hits_state, search_msg], **private)
        query.submit(ui.on_search, inputs, [gallery, hits_state, search_msg], **private)
        gallery.select(ui.on_select, hits_state, [page_view, page_caption], **private)
        ask_btn.click(ui.on_ask, inputs, [answer, citations, cites_state], **private)
        citations.input(ui.on_cite, [citations, cites_state], [page_view, page_caption], **private)
        refresh.click(ui._status_md, None, status_md, **private)
        demo.load(ui._status_md, None, status_md, **private)

        gr.api(ui.search, api_name="search")
        gr.api(ui.ask, api_name="ask")
        gr.api(ui.status, api_name="status")
    demo.docrag_ui = ui  # for tests and the server
    return demo

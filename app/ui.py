"""The Gradio UI: a thin layer over the Workbench. One small builder per panel or tab.

Every task button is also a named API endpoint (`summarize`, `ask`, `info`) that takes the
document file itself, so one `gradio_client` call does a whole job without a UI session.
"""

from __future__ import annotations

import gradio as gr

from app.handlers import (
    DEMO_NOTE,
    describe_document,
    make_options,
    require_file,
    stream_outputs,
    user_errors,
)
from tasks.documents import SUPPORTED_SUFFIXES
from tasks.pipeline import MAX_NEW_TOKENS_LIMIT
from tasks.workbench import Workbench

TITLE = "Granite Long-Doc"
# All generating events share one queue slot: the model runs one generation at a time.
ONE_AT_A_TIME = {"concurrency_id": "model", "concurrency_limit": 1}
CSS = """
#status-line {font-size: 0.9em; opacity: 0.85}
#demo-warning {border-left: 4px solid #f59e0b; padding-left: 0.6em}
"""


def build_ui(workbench: Workbench) -> gr.Blocks:
    """Build the whole page for `workbench` (nothing global: one page per workbench)."""
    with gr.Blocks(title=TITLE) as demo:
        _header(workbench)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                document = _document_panel(workbench)
                max_new_tokens, temperature = _advanced_panel()
            with gr.Column(scale=2):
                with gr.Tabs():
                    _summarize_tab(workbench, document, max_new_tokens, temperature)
                    _ask_tab(workbench, document, max_new_tokens, temperature)
    return demo


def _header(workbench: Workbench) -> None:
    gr.Markdown(f"# {TITLE}\nSummarize long documents and ask questions about them.")
    if workbench.engine is None:
        gr.Markdown(
            f"**Generation is unavailable:** {workbench.unavailable_reason}  \nThe document tools below still work.",
            elem_id="demo-warning",
        )
    elif workbench.demo_model:
        gr.Markdown(f"**Demo model.** {DEMO_NOTE} Start with a real model to get real answers.", elem_id="demo-warning")
    gr.Markdown(f"Model: {workbench.model_status}", elem_id="status-line")


def _document_panel(workbench: Workbench) -> gr.File:
    document = gr.File(label="Document (PDF, TXT, Markdown)", file_types=list(SUPPORTED_SUFFIXES), type="filepath")
    card = gr.Markdown("No document yet. Upload a PDF, TXT or Markdown file.")
    card_json = gr.JSON(visible=False)

    def info(document: str | None) -> tuple[str, dict]:
        """Describe a document: pages, characters, tokens against the context budget."""
        return describe_document(workbench, document)

    document.change(info, inputs=document, outputs=[card, card_json], api_name="info")
    return document


def _advanced_panel() -> tuple[gr.Slider, gr.Slider]:
    with gr.Accordion("Advanced", open=False):
        max_new_tokens = gr.Slider(1, MAX_NEW_TOKENS_LIMIT, value=512, step=1, label="Max new tokens")
        temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
    return max_new_tokens, temperature


def _run_and_stop(label: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        run = gr.Button(label, variant="primary", scale=4)
        stop = gr.Button("Stop", variant="stop", scale=1)
    return run, stop


def _output_area(label: str) -> tuple[gr.Markdown, gr.Markdown, gr.JSON]:
    text = gr.Markdown(label=label, container=True, min_height=160, buttons=["copy"])
    status = gr.Markdown(elem_id="status-line")
    with gr.Accordion("Details (JSON)", open=False):
        details = gr.JSON(label="Result")
    return text, status, details


def _summarize_tab(workbench: Workbench, document: gr.File, max_new_tokens: gr.Slider, temperature: gr.Slider):
    with gr.Tab("Summarize"):
        run, stop = _run_and_stop("Summarize")
        outputs = _output_area("Summary")

    def summarize(document: str | None, max_new_tokens: float = 512, temperature: float = 0.0):
        """Summarize the whole document. Streams (summary so far, status, details)."""
        with user_errors():
            path = require_file(document)
        options = make_options(max_new_tokens, temperature)
        yield from stream_outputs(workbench, lambda: workbench.summarize(path, options))

    inputs = [document, max_new_tokens, temperature]
    running = run.click(summarize, inputs=inputs, outputs=list(outputs), api_name="summarize", **ONE_AT_A_TIME)
    stop.click(fn=None, cancels=[running], api_visibility="private")


def _ask_tab(workbench: Workbench, document: gr.File, max_new_tokens: gr.Slider, temperature: gr.Slider):
    with gr.Tab("Ask"):
        question = gr.Textbox(label="Question", placeholder="What does the document say about…?", lines=2)
        run, stop = _run_and_stop("Ask")
        outputs = _output_area("Answer")

    def ask(document: str | None, question: str, max_new_tokens: float = 512, temperature: float = 0.0):
        """Answer a question about the document. Streams (answer so far, status, details)."""
        with user_errors():
            path = require_file(document)
        options = make_options(max_new_tokens, temperature)
        yield from stream_outputs(workbench, lambda: workbench.ask(path, question, options))

    inputs = [document, question, max_new_tokens, temperature]
    running = [
        run.click(ask, inputs=inputs, outputs=list(outputs), api_name="ask", **ONE_AT_A_TIME),
        question.submit(ask, inputs=inputs, outputs=list(outputs), api_visibility="private", **ONE_AT_A_TIME),
    ]
    stop.click(fn=None, cancels=running, api_visibility="private")

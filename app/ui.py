"""The Gradio UI: a thin layer over the Workbench. One small builder per panel; the task tabs
are built in `app.tabs`.

Left: the uploads, example documents, and one card per document. Right: the output language and
advanced settings, then the task tabs. Every task button is also a named API endpoint
(`summarize`, `ask`, `extract`, `classify`, `custom`, plus `info` and `export`) that takes the
document files themselves, so one `gradio_client` call does a whole job without a UI session.
Everything a person does lives in their browser session (`gr.State`): the cancel switch of the
running task and the Ask history; nothing is shared between sessions.
"""

from __future__ import annotations

import dataclasses

import gradio as gr

from app import untrusted
from app.cards import EMPTY_CARDS, describe_documents
from app.exports import export_files
from app.files import app_folders, sweep, sweep_interval, use_upload_folder
from app.inputs import make_options, session_salt
from app.launch import DEFAULT_KEEP_MINUTES
from app.results import DEMO_NOTE
from app.tabs import (
    Settings,
    TabContext,
    ask_tab,
    classify_tab,
    custom_tab,
    example_documents,
    extract_tab,
    summarize_tab,
)
from app.untrusted import MARKDOWN_OPTIONS
from tasks.budget import STRATEGY_CHOICES
from tasks.documents import SUPPORTED_SUFFIXES
from tasks.language import LANGUAGES
from tasks.options import MAX_NEW_TOKENS_LIMIT
from tasks.workbench import Workbench

TITLE = "Granite Long-Doc"
CSS = """
#status-line, .steps {font-size: 0.9em; opacity: 0.85}
#demo-warning {border-left: 4px solid #f59e0b; padding-left: 0.6em}
.doc-cards {display: flex; flex-direction: column; gap: 8px}
.doc-cards.empty {opacity: 0.8; font-size: 0.95em}
.doc-card {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px;
           background: var(--block-background-fill)}
.doc-name {font-weight: 600; overflow-wrap: anywhere}
.doc-facts, .doc-note {font-size: 0.85em; opacity: 0.85}
.gauge {height: 8px; border-radius: 4px; background: var(--border-color-primary); overflow: hidden;
        margin: 6px 0 2px}
.gauge-fill {height: 100%; background: #22c55e}
.gauge.over .gauge-fill {background: #f59e0b}
.doc-card.strategies ul {margin: 4px 0 2px 1.2em; padding: 0; font-size: 0.9em}
"""
LANGUAGE_CHOICES = [("Auto: the document's language", "auto")] + [
    (f"{native} ({english})" if native != english else english, code) for code, (english, native) in LANGUAGES.items()
]


DEFAULT_KEEP_SECONDS = int(DEFAULT_KEEP_MINUTES * 60)


def build_ui(workbench: Workbench, keep_seconds: int = DEFAULT_KEEP_SECONDS) -> gr.Blocks:
    """Build the whole page for `workbench` (nothing global: one page per workbench). Uploaded and
    exported files live in the app's own folders (app.files) and are deleted `keep_seconds` after
    they were written: those left by earlier processes now, the rest by Gradio's clean-up and by
    the periodic sweep that `ServeOptions.launch_kwargs` adds to the server."""
    folders = app_folders()
    use_upload_folder(folders)  # before any component is built: each reads Gradio's upload folder
    sweep(folders, keep_seconds)  # nothing of this Blocks exists yet, so only leftovers can be old
    every = int(sweep_interval(keep_seconds))
    with gr.Blocks(title=TITLE, delete_cache=(every, keep_seconds)) as demo:
        session = gr.State({})  # per browser session: the cancel switch of its running task
        _header(workbench)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                files = _uploads()
                password = gr.Textbox(
                    label="PDF password (only for encrypted PDFs)",
                    value="",
                    type="password",
                    max_lines=1,
                    elem_id="password",
                )
                cards = (gr.HTML(EMPTY_CARDS, elem_id="document-cards"), gr.JSON(visible=False))
            with gr.Column(scale=2, min_width=420):
                settings = _settings_panel()
                tab = TabContext(workbench, files, settings, session, keep_seconds, password)
                with gr.Tabs():
                    summarize_tab(tab)
                    ask_tab(tab)
                    extract_tab(tab)
                    classify_tab(tab)
                    custom_tab(tab)
        _wire_cards(tab, cards)
        _export_endpoint(keep_seconds)
    _keep_built_files(demo)
    return demo


def _keep_built_files(demo: gr.Blocks) -> None:
    """Keep the files copied into the cache while the page was built (the example documents) for as
    long as it runs. gr.Examples copies them as temporary files, not into `keep_in_cache`, so
    Gradio's own clean-up would delete them after `keep_seconds` and the examples would stop
    loading; the app's sweep spares `keep_in_cache` too."""
    for block in demo.blocks.values():
        block.keep_in_cache.update(block.temp_files)


def _export_endpoint(keep_seconds: int) -> None:
    """The `export` API endpoint: a task's JSON details in, its Markdown and JSON files out (the
    page's Export buttons do the same for the result on screen)."""
    details = gr.JSON(visible=False)
    markdown_file, json_file = gr.File(visible=False), gr.File(visible=False)

    def export(details: dict | None) -> tuple[str, str]:
        """A finished result (the details JSON any task returns) as a Markdown file and a JSON file."""
        return export_files(details, keep_seconds)

    trigger = gr.Button(visible=False)  # an endpoint needs an event; nothing on the page clicks this
    trigger.click(export, inputs=[details], outputs=[markdown_file, json_file], api_name="export")


def _header(workbench: Workbench) -> None:
    gr.Markdown(
        f"# {TITLE}\nSummarize long documents, ask questions with page citations, extract fields, classify, "
        "or run your own instruction. Upload files on the left (or pick an example), then choose a task."
    )
    if workbench.engine is None:
        gr.Markdown(
            f"**Generation is unavailable:** {untrusted.plain(workbench.unavailable_reason or '')}  \n"
            "The document tools below still work."
            + ("  \nEach request tries the model server again." if workbench.reconnect else ""),
            elem_id="demo-warning",
            **MARKDOWN_OPTIONS,
        )
    elif workbench.demo_model:
        gr.Markdown(f"**Demo model.** {DEMO_NOTE} Start with a real model to get real answers.", elem_id="demo-warning")
    gr.Markdown(f"Model: {untrusted.plain(workbench.model_status)}", elem_id="status-line", **MARKDOWN_OPTIONS)


def _uploads() -> gr.File:
    files = gr.File(
        label="Documents (PDF, DOCX, HTML, TXT, Markdown)",
        file_count="multiple",
        file_types=list(SUPPORTED_SUFFIXES),
        type="filepath",
        elem_id="documents",
    )
    examples = example_documents()
    if examples:
        gr.Examples(
            examples=[[[str(path)]] for path in examples],
            example_labels=[path.name for path in examples],
            inputs=[files],
            label="Try an example (written for this project)",
        )
    return files


def _settings_panel() -> Settings:
    with gr.Row():
        language = gr.Dropdown(LANGUAGE_CHOICES, value="auto", label="Output language", scale=2)
        with gr.Accordion("Advanced", open=False):
            # Number fields without minimum, maximum or precision: Gradio then hands an API caller's
            # value to the handler as sent, which checks it and names the setting in its message
            # (make_options). A gr.Slider, or bounds, fail on a string inside Gradio, before any
            # handler, and the caller gets no message; a Slider subclass makes Gradio write a .pyi
            # file next to this module at import.
            max_new_tokens = gr.Number(value=512, step=1, label=f"Max new tokens (1 to {MAX_NEW_TOKENS_LIMIT:,})")
            temperature = gr.Number(value=0.0, step=0.05, label="Temperature (0 = greedy, up to 2)")
            strategy = gr.Dropdown(list(STRATEGY_CHOICES), value="auto", label="Strategy for long documents")
            budget = gr.Number(value=0, step=1, label="Context budget in tokens (0 = the default)")
    return Settings(language, max_new_tokens, temperature, strategy, budget)


def _wire_cards(tab: TabContext, cards: tuple[gr.HTML, gr.JSON]) -> None:
    workbench = tab.workbench

    def info(
        documents: list[str] | None,
        strategy: str = "auto",
        context_budget: float = 0,
        password: str = "",
        max_new_tokens: float = 512,
        language: str = "auto",
        session: dict | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's documented way to get a progress bar)
    ):
        """Describe documents: one card each (pages, language, tokens against the budget) and what
        every task will do with them under these settings (the same plan the task makes), with the
        expected wait. Scanned pages are read by OCR, with progress. Returns (HTML, JSON)."""
        options = make_options(workbench, None, language, max_new_tokens, 0.0, strategy, context_budget)
        options = dataclasses.replace(options, cache_salt=session_salt(session))  # the tasks reuse its OCR
        report = lambda text: progress(None, desc=text)  # noqa: E731
        return describe_documents(workbench, documents, options, password or None, report)

    settings = tab.settings
    inputs = [tab.files, settings.strategy, settings.budget, tab.password, settings.max_new_tokens, settings.language,
              tab.session]  # fmt: skip
    tab.files.change(info, inputs=inputs, outputs=list(cards), api_name="info")
    for control in (settings.strategy, settings.budget, tab.password, settings.max_new_tokens, settings.language):
        control.change(info, inputs=inputs, outputs=list(cards), api_visibility="private")

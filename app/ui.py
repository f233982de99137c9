"""The Gradio UI: a thin layer over the Workbench. One small builder per panel; the task tabs
are built in `app.tabs` and `app.chat`, the API endpoints in `app.api`.

Left: the uploads and one card (or error chip) per document. Middle: the output language and
advanced settings, then the task tabs. Right: the document viewer, opened by a citation or a
source. Everything a person does lives in their browser session (`gr.State`): the cancel switch
of the running task, the Ask thread, what the viewer may open; nothing is shared between sessions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr

from app import untrusted
from app.api import LANGUAGE_CHOICES, api_endpoints
from app.cards import EMPTY_CARDS, describe_documents, empty_cards
from app.chat import ask_tab, cleared_thread
from app.exports import export_files
from app.files import app_folders, sweep, sweep_interval, use_upload_folder
from app.i18n import label, text, translations
from app.inputs import make_options, session_salt, user_errors
from app.launch import DEFAULT_KEEP_MINUTES
from app.panels import ResultArea, Settings, TabContext, example_documents, exports, page_language, remember_language
from app.tabs import classify_tab, custom_tab, extract_tab, summarize_tab
from app.untrusted import MARKDOWN_OPTIONS
from app.viewer import Registry, message_html, open_reference, turn_page
from tasks.budget import STRATEGY_CHOICES
from tasks.documents import SUPPORTED_SUFFIXES
from tasks.errors import UserError
from tasks.options import MAX_NEW_TOKENS_LIMIT  # noqa: F401  (the label states it: app/locales)
from tasks.workbench import Workbench

TITLE = "Granite Long-Doc"
ASSETS = Path(__file__).resolve().parent / "assets"
CSS = (ASSETS / "page.css").read_text(encoding="utf-8")
PAGE_SCRIPT = (ASSETS / "page.js").read_text(encoding="utf-8")
DEFAULT_KEEP_SECONDS = int(DEFAULT_KEEP_MINUTES * 60)


def launch_options() -> dict:
    """What `launch()` needs besides the server options: the page's style and its languages."""
    return {"css": CSS, "i18n": translations()}


def build_ui(workbench: Workbench, keep_seconds: int = DEFAULT_KEEP_SECONDS) -> gr.Blocks:
    """Build the whole page for `workbench` (nothing global: one page per workbench). Uploaded and
    exported files live in the app's own folders (app.files) and are deleted `keep_seconds` after
    they were written."""
    folders = app_folders()
    use_upload_folder(folders)  # before any component is built: each reads Gradio's upload folder
    sweep(folders, keep_seconds)  # nothing of this Blocks exists yet, so only leftovers can be old
    every = int(sweep_interval(keep_seconds))
    with gr.Blocks(title=TITLE, delete_cache=(every, keep_seconds)) as demo:
        session = gr.State({})  # per browser session: the cancel switch of its running task, its cache salt
        registry = gr.State(Registry())
        loaded = gr.State({})
        api_endpoints(workbench, session)  # first: the page's own events must not take their names
        _header(workbench)
        with gr.Row(equal_height=False, elem_id="main-row"):
            with gr.Column(scale=1, min_width=300, elem_id="documents-column"):
                files = _uploads()
                password = gr.Textbox(label=label("uploads.password"), value="", type="password", max_lines=1,
                                      elem_id="password")  # fmt: skip
                cards = (gr.HTML(EMPTY_CARDS, elem_id="document-cards"), gr.JSON(visible=False))
            with gr.Column(scale=2, min_width=360, elem_id="task-column"):
                settings = _settings_panel()
                tab = TabContext(workbench, files, loaded, settings, session, registry, keep_seconds, password)
                with gr.Tabs(elem_id="task-tabs"):
                    areas = [summarize_tab(tab)]
                    ask_area, thread, notice = ask_tab(tab)
                    areas += [ask_area, extract_tab(tab), classify_tab(tab), custom_tab(tab)]
            with gr.Column(scale=2, min_width=320, elem_id="viewer-column", visible=False) as viewer_column:
                viewer = _viewer(tab, viewer_column)
        # Outside the viewer's column, which is not on the page while it is hidden.
        bridge = gr.HTML("", js_on_load=PAGE_SCRIPT, elem_id="cite-bridge", visible="hidden")
        _wire_viewer(tab, viewer, bridge)
        _wire_cards(tab, cards, areas, thread, notice, viewer)
        demo.load(_opened_page, inputs=[session], outputs=[cards[0], session], queue=False, api_visibility="private")
        _info_endpoint(tab, cards)
        _export_endpoint(keep_seconds)
    _keep_built_files(demo)
    return demo


def _opened_page(session: dict, request: gr.Request):
    """As the page opens: note the browser's language in the session (what the server writes into
    the page follows it) and say "no documents yet" in it."""
    session = remember_language(session, request)
    return empty_cards(page_language(session)), session


def _keep_built_files(demo: gr.Blocks) -> None:
    """Keep the files copied into the cache while the page was built (the example documents) for as
    long as it runs (gr.Examples copies them as temporary files, which Gradio would delete)."""
    for block in demo.blocks.values():
        block.keep_in_cache.update(block.temp_files)


def _export_endpoint(keep_seconds: int) -> None:
    """The `export` API endpoint: a task's JSON details in, its Markdown and JSON files out."""
    details = gr.JSON(visible=False)
    markdown_file, json_file = gr.File(visible=False), gr.File(visible=False)

    def export(details: dict | None) -> tuple[str, str]:
        """A finished result (the details JSON any task returns) as a Markdown file and a JSON file."""
        return export_files(details, keep_seconds)

    trigger = gr.Button(visible=False)  # an endpoint needs an event; nothing on the page clicks this
    trigger.click(export, inputs=[details], outputs=[markdown_file, json_file], api_name="export")


def _header(workbench: Workbench) -> None:
    gr.Markdown(f"# {TITLE}", elem_id="title")
    gr.Markdown(label("app.intro"), elem_id="intro")
    if workbench.engine is None:
        gr.Markdown(label("app.reconnecting" if workbench.reconnect else "app.unavailable"), elem_id="demo-warning")
        with gr.Accordion(label("app.operator"), open=False, elem_id="operator-note"):
            gr.Markdown(untrusted.plain(workbench.unavailable_reason or "no model is loaded"), **MARKDOWN_OPTIONS)
    elif workbench.demo_model:
        gr.Markdown(label("app.demo_model"), elem_id="demo-warning")
    gr.Markdown(f"{untrusted.plain(workbench.model_status)}", elem_id="status-line", **MARKDOWN_OPTIONS)


def _uploads() -> gr.File:
    files = gr.File(label=label("uploads.label"), file_count="multiple", file_types=list(SUPPORTED_SUFFIXES),
                    type="filepath", elem_id="documents", height=140)  # fmt: skip
    examples = example_documents()
    if examples:
        gr.Examples(examples=[[[str(path)]] for path in examples], example_labels=[path.name for path in examples],
                    inputs=[files], label=label("uploads.examples"))  # fmt: skip
    return files


def _settings_panel() -> Settings:
    with gr.Row(elem_id="settings-row"):
        language = gr.Dropdown(LANGUAGE_CHOICES, value="auto", label=label("settings.language"), scale=2,
                               elem_id="output-language")  # fmt: skip
        with gr.Accordion(label("settings.advanced"), open=False):
            # Number fields without minimum, maximum or precision: Gradio then hands an API caller's
            # value to the handler as sent, which checks it and names the setting in its message.
            max_new_tokens = gr.Number(value=512, step=1, label=label("settings.max_new_tokens"))
            temperature = gr.Number(value=0.0, step=0.05, label=label("settings.temperature"))
            strategy = gr.Dropdown(list(STRATEGY_CHOICES), value="auto", label=label("settings.strategy"))
            budget = gr.Number(value=0, step=1, label=label("settings.budget"))
    return Settings(language, max_new_tokens, temperature, strategy, budget)


@dataclasses.dataclass
class Viewer:
    column: gr.Column
    page: gr.HTML
    state: gr.State
    previous: gr.Button
    following: gr.Button
    close: gr.Button


def _viewer(tab: TabContext, column: gr.Column) -> Viewer:
    """The viewer: the page with the passage lit, and page turning."""
    gr.Markdown(label("viewer.title"), elem_id="viewer-title")
    with gr.Row(elem_id="viewer-nav"):
        previous = gr.Button(label("viewer.previous"), size="sm", elem_id="viewer-previous")
        following = gr.Button(label("viewer.next"), size="sm", elem_id="viewer-next")
        close = gr.Button(label("viewer.close"), size="sm", elem_id="viewer-close")
    page = gr.HTML("", elem_id="viewer", elem_classes="viewer")
    return Viewer(column, page, gr.State(None), previous, following, close)


def _wire_viewer(tab: TabContext, viewer: Viewer, bridge: gr.HTML) -> None:
    """A click the page script reports through the hidden `bridge` opens the viewer there."""
    workbench = tab.workbench
    page, state, column = viewer.page, viewer.state, viewer.column

    def opened(reference, registry, password, session):
        html, shown = open_reference(workbench, registry, reference or "", password or None, session_salt(session),
                                     page_language(session))  # fmt: skip
        return html, shown, gr.Column(visible=True)

    def turned(step: int):
        def turn(shown, registry, password, session):
            return turn_page(workbench, registry, shown, step, password or None, session_salt(session),
                             page_language(session))  # fmt: skip

        return turn

    scroll = (
        "() => document.querySelector('#viewer .viewer-mark.selected, #viewer mark')?.scrollIntoView({block: 'center'})"
    )
    inputs = [tab.registry, tab.password, tab.session]
    bridge.click(opened, inputs=[bridge, *inputs], outputs=[page, state, column], api_visibility="private",
                 show_progress="minimal").then(None, js=scroll)  # fmt: skip
    viewer.previous.click(turned(-1), inputs=[state, *inputs], outputs=[page, state], api_visibility="private")
    viewer.following.click(turned(1), inputs=[state, *inputs], outputs=[page, state], api_visibility="private")
    viewer.close.click(lambda: gr.Column(visible=False), outputs=[column], queue=False, api_visibility="private")


def _info(tab: TabContext):
    workbench = tab.workbench

    def info(documents: list[str] | None, strategy: str = "auto", context_budget: float = 0, password: str = "",
             max_new_tokens: float = 512, language: str = "auto", session: dict | None = None,
             progress: gr.Progress = gr.Progress()):  # noqa: B008  # fmt: skip
        """Describe documents: one card each (pages, language, tokens against the budget) or an
        error chip for a file that cannot be read, and what every task will do with them under
        these settings, with the expected wait. Scanned pages are read by OCR, with progress.
        Returns (HTML, JSON; files that could not be read under "errors"); when none could be
        read, their reason is the error."""
        html, data, usable = _describe(workbench, documents, strategy, context_budget, password, max_new_tokens,
                                       language, session, progress)  # fmt: skip
        errors = data.get("errors") or []
        if errors and not usable:  # nothing to describe: the caller gets the reason as an error
            message = (
                errors[0]["message"] if len(errors) == 1 else "; ".join(f"{e['file']}: {e['message']}" for e in errors)
            )
            with user_errors():
                raise UserError(message)
        return html, data

    return info


def _describe(workbench, documents, strategy, context_budget, password, max_new_tokens, language, session, progress,
              page: str = "en"):  # fmt: skip
    options = make_options(workbench, None, language, max_new_tokens, 0.0, strategy, context_budget)
    options = dataclasses.replace(options, cache_salt=session_salt(session))  # the tasks reuse its OCR
    report = lambda message: progress(None, desc=message)  # noqa: E731
    return describe_documents(workbench, documents, options, password or None, report, page)


def _info_endpoint(tab: TabContext, cards: tuple[gr.HTML, gr.JSON]) -> None:
    trigger = gr.Button(visible=False)
    settings = tab.settings
    inputs = [tab.files, settings.strategy, settings.budget, tab.password, settings.max_new_tokens, settings.language,
              tab.session]  # fmt: skip
    trigger.click(_info(tab), inputs=inputs, outputs=list(cards), api_name="info")


def _wire_cards(tab: TabContext, cards: tuple[gr.HTML, gr.JSON], areas: list[ResultArea], thread: gr.Chatbot,
                notice: gr.HTML, viewer: Viewer) -> None:  # fmt: skip
    """New documents: fresh cards (each file its card or its error chip); the results, exports,
    the Ask thread (with a notice) and the viewer of the earlier documents are cleared."""
    workbench = tab.workbench
    settings = tab.settings
    inputs = [tab.files, settings.strategy, settings.budget, tab.password, settings.max_new_tokens, settings.language,
              tab.session]  # fmt: skip

    def describe(documents, strategy, context_budget, password, max_new_tokens, language, session,
                 progress: gr.Progress = gr.Progress()):  # noqa: B008  # fmt: skip
        html, data, usable = _describe(workbench, documents, strategy, context_budget, password, max_new_tokens,
                                       language, session, progress, page_language(session))  # fmt: skip
        return html, data, {"files": list(documents or []), "usable": usable}

    outputs = [*cards, tab.loaded]
    tab.files.change(describe, inputs=inputs, outputs=outputs, api_visibility="private")
    for control in (settings.strategy, settings.budget, tab.password, settings.max_new_tokens, settings.language):
        control.change(describe, inputs=inputs, outputs=outputs, api_visibility="private")

    cleared = [component for area in areas for component in area.cleared if component is not thread]

    def clear(history, registry, session):
        empty_thread, message, registry = cleared_thread(registry, bool(history), page_language(session))
        blank = []
        for area in areas:
            for component in area.cleared:
                if component is thread:
                    continue
                if isinstance(component, gr.DownloadButton):
                    blank.append(gr.DownloadButton(value=None, interactive=False))
                elif isinstance(component, (gr.JSON, gr.Label, gr.Code)):
                    blank.append(None)
                else:
                    blank.append("")
        empty_view = message_html(text("viewer.empty", page_language(session)))
        return [empty_thread, message, registry, *blank, empty_view, None, gr.Column(visible=False)]

    outputs = [thread, notice, tab.registry, *cleared, viewer.page, viewer.state, viewer.column]
    tab.files.change(clear, inputs=[thread, tab.registry, tab.session], outputs=outputs, queue=False,
                     api_visibility="private")  # fmt: skip


__all__ = ["CSS", "build_ui", "exports", "launch_options"]

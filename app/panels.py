"""What every task tab shares: its context (workbench, documents, settings, session state), a Run
button that becomes Stop while the task runs, a progress panel (bar, percentage, time elapsed and
left, named steps: a live region), the result, its sources as plain text with buttons that open
the viewer, and exports. Errors stay in the tab's progress panel, next to what caused them. The
named API endpoints are app.api's, not these events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import escape, unescape
from pathlib import Path
from typing import Any

import gradio as gr

from app.api import stop_task
from app.exports import export_files
from app.gpu import on_spaces_gpu
from app.i18n import browser_language, label
from app.inputs import file_list, make_options
from app.runs import Frame, follow
from app.sources_view import sources_html
from app.untrusted import MARKDOWN_OPTIONS
from tasks.documents import SUPPORTED_SUFFIXES
from tasks.errors import UserError
from tasks.workbench import Workbench

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


@dataclass
class Settings:
    """The shared task settings, passed to every task in this order."""

    language: gr.Dropdown
    max_new_tokens: gr.Number
    temperature: gr.Number
    strategy: gr.Dropdown
    budget: gr.Number

    @property
    def inputs(self) -> list:
        return [self.language, self.max_new_tokens, self.temperature, self.strategy, self.budget]


@dataclass
class TabContext:
    """What every tab needs: the workbench, the documents, the settings and the session's state."""

    workbench: Workbench
    files: gr.File
    loaded: gr.State  # {"files": [...], "usable": [...]}: the files of the cards that loaded
    settings: Settings
    session: gr.State
    registry: gr.State  # app.viewer.Registry: what this session's results cite
    keep_seconds: int  # uploads and exports are deleted this long after they were written
    password: gr.Textbox  # for encrypted PDFs

    @property
    def ready(self) -> bool:
        """Tasks can run: a model is loaded, or a model server is tried again at each request."""
        return self.workbench.engine is not None or self.workbench.reconnect is not None

    def task_inputs(self, *own: gr.components.Component) -> list:
        return [self.files, self.loaded, *own, *self.settings.inputs, self.password, self.session, self.registry]


@dataclass
class ResultArea:
    """A tab's result widgets (element ids `<name>-progress`, `-output`, `-sources`, `-export-md`,
    `-export-json`: the browser tests find them so)."""

    name: str
    output: gr.components.Component
    progress: gr.HTML
    sources: gr.HTML | None
    details: gr.JSON
    export_markdown: gr.DownloadButton
    export_json: gr.DownloadButton

    @property
    def cleared(self) -> list:
        return [self.output, self.progress, *([self.sources] if self.sources else []), self.details,
                self.export_markdown, self.export_json]  # fmt: skip


def example_documents() -> list[Path]:
    """The example documents that ship with the project (examples/), PDF first."""
    if not EXAMPLES_DIR.is_dir():
        return []
    found = [path for path in EXAMPLES_DIR.iterdir() if path.suffix.lower() in SUPPORTED_SUFFIXES]
    return sorted(found, key=lambda path: (path.suffix.lower() != ".pdf", path.name))


def run_and_stop(tab: TabContext, key: str, name: str) -> tuple[gr.Button, gr.Button]:
    """The Run button (disabled without a model) and the Stop button that replaces it while it runs."""
    run = gr.Button(label(key), variant="primary", elem_id=f"{name}-run", interactive=tab.ready)
    stop = gr.Button(label("run.stop"), variant="stop", elem_id=f"{name}-stop", visible=False)
    return run, stop


def result_area(name: str, output: gr.components.Component, with_sources: bool = True) -> ResultArea:
    progress = gr.HTML("", elem_id=f"{name}-progress", elem_classes="run-panel")
    output.render()
    sources = None
    if with_sources:
        with gr.Accordion(label("output.sources"), open=True):
            sources = gr.HTML("", elem_id=f"{name}-sources")
    with gr.Row():
        export_markdown = gr.DownloadButton(label("output.export_markdown"), interactive=False, size="sm",
                                            elem_id=f"{name}-export-md")  # fmt: skip
        export_json = gr.DownloadButton(label("output.export_json"), interactive=False, size="sm",
                                        elem_id=f"{name}-export-json")  # fmt: skip
    with gr.Accordion(label("output.details"), open=False):
        details = gr.JSON(label="Result")
    return ResultArea(name, output, progress, sources, details, export_markdown, export_json)


def answer_box(key: str, name: str, min_height: int = 120) -> gr.Markdown:
    """The text a task writes, as Markdown that cannot load anything (rendered later by result_area)."""
    return gr.Markdown(label=label(key), elem_id=f"{name}-output", container=True, min_height=min_height,
                       buttons=["copy"], render=False, **MARKDOWN_OPTIONS)  # fmt: skip


def task_paths(documents: Any, loaded: dict | None) -> list[str]:
    """The files to run on: those whose cards loaded (a file with an error chip is left out)."""
    paths = file_list(documents)
    if loaded and loaded.get("files") == paths:
        if not loaded["usable"]:
            raise UserError("none of the uploaded files could be read: see the messages under them")
        return list(loaded["usable"])
    return paths


def file_names(workbench: Workbench, paths: list[str]) -> dict[str, str]:
    return dict(zip(workbench.document_names(paths), paths, strict=True))


def exports(details: dict | None, keep_seconds: int, conversation: list[dict] | None = None) -> tuple:
    """The export buttons for a finished result (disabled before there is one); with a
    `conversation` (the Ask thread's results), the Markdown holds every question and answer."""
    if not details or "task" not in details:
        return gr.DownloadButton(value=None, interactive=False), gr.DownloadButton(value=None, interactive=False)
    markdown_path, json_path = export_files(details, keep_seconds, conversation)
    return gr.DownloadButton(value=markdown_path, interactive=True), gr.DownloadButton(
        value=json_path, interactive=True
    )


def wire_run(tab: TabContext, run: gr.Button, stop: gr.Button, handler: Callable, inputs: list, outputs: list,
             triggers: tuple = (), *, by_run: bool = True) -> None:  # fmt: skip
    """`run` (unless not `by_run`) and `triggers` (a field's Enter) swap Run for Stop, run
    `handler`, and swap back; Stop sets the session's cancel switch (quietly when nothing runs)."""
    if not tab.workbench.on_server:  # a model server needs no GPU here
        handler = on_spaces_gpu(handler)
    one_model = {"concurrency_id": "model", "concurrency_limit": tab.workbench.concurrency}
    for trigger in ((run.click,) if by_run else ()) + tuple(triggers):
        busy = trigger(_busy, outputs=[run, stop], queue=False, api_visibility="private")
        running = busy.then(handler, inputs=inputs, outputs=outputs, show_progress="hidden",
                            api_visibility="private", **one_model)  # fmt: skip
        running.then(_idle, outputs=[run, stop], queue=False, api_visibility="private")
    if by_run:
        stop.click(stop_task, inputs=[tab.session], queue=False, api_visibility="private")


def _busy():
    return gr.Button(visible=False), gr.Button(visible=True)


def _idle():
    return gr.Button(visible=True), gr.Button(visible=False)


def page_language(session: dict | None) -> str:
    """The language the page's server-written text is in: the browser's, noted as the page opened."""
    return (session or {}).get("language", "en")


def remember_language(session: dict, request: gr.Request) -> dict:
    session["language"] = browser_language(request)
    return session


def frames(tab: TabContext, documents, loaded, settings: tuple, session: dict | None,
           start: Callable) -> Iterator[tuple[Frame, list[str]]]:  # fmt: skip
    """The frames of one run of `start(paths, options)` (its inputs checked first: a bad setting
    or no documents is the first frame's error), with the files it ran on."""
    language = page_language(session)
    try:
        paths = task_paths(documents, loaded)
        options = make_options(tab.workbench, session, *settings)
    except (UserError, gr.Error) as exc:
        message = str(exc) if isinstance(exc, UserError) else unescape(exc.message)  # a toast's text is HTML
        yield Frame(error=message, progress=_error_html(message)), []
        return
    for frame in follow(lambda: start(paths, options), language, options.cancel):
        yield frame, paths


def _error_html(message: str) -> str:
    return f'<div class="run-progress failed" role="alert" dir="auto">{escape(message)}</div>'


def remembered(tab: TabContext, registry, scope: str, frame: Frame, paths: list[str], session: dict | None) -> str:
    """A finished result kept under `scope` (what its sources may open in the viewer); its
    sources panel ("" before the result)."""
    if not frame.details:
        return ""
    registry.remember(scope, frame.details, file_names(tab.workbench, paths))
    return sources_html(frame.details, scope, page_language(session))


Shape = Callable[[Frame, str, tuple, Any], tuple]  # (frame, sources HTML, export buttons, registry) -> outputs


def task_handler(tab: TabContext, scope: str | None, begin: Callable, shape: Shape) -> Callable:
    """A tab's event handler: its inputs are `tab.task_inputs(*own)`; `begin(own, paths, options,
    password)` starts the task; `shape` makes the tab's outputs of each frame. A finished result
    is remembered under `scope` (what its sources may open in the viewer)."""

    def handler(documents, loaded, *values):
        *own, language, max_new_tokens, temperature, strategy, budget, password, session, registry = values
        settings = (language, max_new_tokens, temperature, strategy, budget)
        start = lambda paths, options: begin(own, paths, options, password or None)  # noqa: E731
        for frame, paths in frames(tab, documents, loaded, settings, session, start):
            sources = remembered(tab, registry, scope, frame, paths, session) if scope else ""
            yield shape(frame, sources, exports(frame.details, tab.keep_seconds), registry)

    return handler

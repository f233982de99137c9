"""The task tabs of the web UI: one builder per tab, and the wiring they share (run and stop,
streamed outputs with named steps and a progress bar, sources, exports, the Ask history).

Each task's handler is also its named API endpoint, so its parameters are plain values in a fixed
order: the documents, the task's own inputs, the settings, then the PDF password (optional).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from app import untrusted
from app.exports import export_files
from app.gpu import on_spaces_gpu
from app.inputs import file_list, make_options, user_errors
from app.results import ResultView
from app.streaming import stream_outputs
from app.untrusted import MARKDOWN_OPTIONS
from tasks.documents import SUPPORTED_SUFFIXES
from tasks.events import Progress
from tasks.extract import spec_from_fields, spec_from_schema
from tasks.options import TaskOptions
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
    """What every tab needs: the workbench, the documents input, the settings and the session."""

    workbench: Workbench
    files: gr.File
    settings: Settings
    session: gr.State
    keep_seconds: int  # uploads and exports are deleted this long after they were written
    password: gr.Textbox  # for encrypted PDFs; passed to every task after the settings


@dataclass
class Output:
    """A tab's result area."""

    text: gr.components.Component
    steps: gr.Markdown
    sources: gr.Markdown
    details: gr.JSON
    export_markdown: gr.DownloadButton
    export_json: gr.DownloadButton

    @property
    def streamed(self) -> list:
        return [self.text, self.steps, self.sources, self.details]


def example_documents() -> list[Path]:
    """The example documents that ship with the project (examples/), PDF first."""
    if not EXAMPLES_DIR.is_dir():
        return []
    found = [path for path in EXAMPLES_DIR.iterdir() if path.suffix.lower() in SUPPORTED_SUFFIXES]
    return sorted(found, key=lambda path: (path.suffix.lower() != ".pdf", path.name))


def _run_and_stop(label: str, name: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        run = gr.Button(label, variant="primary", scale=4, elem_id=f"{name}-run")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id=f"{name}-stop")
    return run, stop


def _answer_box(label: str, name: str, min_height: int = 120) -> gr.Markdown:
    """The text a task writes (its element id is `<name>-output`), as Markdown that cannot load anything."""
    return gr.Markdown(label=label, elem_id=f"{name}-output", container=True, min_height=min_height,
                       buttons=["copy"], **MARKDOWN_OPTIONS)  # fmt: skip


def _output_area(name: str, text: gr.components.Component, with_sources: bool = True) -> Output:
    """The result area of task `name` (its text component has the element id `<name>-output`; the
    others `<name>-steps`, `-sources`, `-export-md`, `-export-json`: the browser test finds them so)."""
    steps = gr.Markdown(elem_classes="steps", elem_id=f"{name}-steps", **MARKDOWN_OPTIONS)
    with gr.Accordion("Sources", open=True, visible=with_sources):
        sources = gr.Markdown(elem_id=f"{name}-sources", **MARKDOWN_OPTIONS)
    with gr.Row():
        export_markdown = gr.DownloadButton(
            "Export Markdown", interactive=False, size="sm", elem_id=f"{name}-export-md"
        )
        export_json = gr.DownloadButton("Export JSON", interactive=False, size="sm", elem_id=f"{name}-export-json")
    with gr.Accordion("Details (JSON)", open=False):
        details = gr.JSON(label="Result")
    return Output(text, steps, sources, details, export_markdown, export_json)


def _wire(tab: TabContext, run: gr.Button, stop: gr.Button, handler, inputs: list, output: Output, name: str, *,
          streamed: list | None = None, extra=()) -> list:  # fmt: skip
    """`run` (and `extra` triggers) start `handler`; when it finishes, the export buttons get the
    result's files. `stop` sets the session's cancel switch, so the engine stops within a token
    (or a prefill chunk) and the result so far is shown. Returns the run events (for `.success`)."""
    exports = [output.export_markdown, output.export_json]
    if not tab.workbench.on_server:  # a model server needs no GPU here
        handler = on_spaces_gpu(handler)
    # All generating events share the model's queue slots: one in process, --max-concurrent on a server.
    one_model = {"concurrency_id": "model", "concurrency_limit": tab.workbench.concurrency}
    events = []
    for first, trigger in zip([True, *[False] * len(extra)], [run.click, *extra], strict=True):
        trigger(_no_exports, outputs=exports, queue=False, api_visibility="private")
        naming = {"api_name": name} if first else {"api_visibility": "private"}
        event = trigger(handler, inputs=inputs, outputs=streamed or output.streamed, **naming, **one_model)
        export = lambda details: _exports(details, tab.keep_seconds)  # noqa: E731
        event.success(export, inputs=[output.details], outputs=exports, api_visibility="private")
        events.append(event)
    stop.click(stop_task, inputs=[tab.session], queue=False, api_name=f"stop_{name}", api_visibility="undocumented")
    return events


def _no_exports():
    return gr.DownloadButton(value=None, interactive=False), gr.DownloadButton(value=None, interactive=False)


def _exports(details: dict | None, keep_seconds: int):
    """Export a finished result (a task's JSON details) as a Markdown file and a JSON file."""
    markdown_path, json_path = export_files(details, keep_seconds)
    return gr.DownloadButton(value=markdown_path, interactive=True), gr.DownloadButton(
        value=json_path, interactive=True
    )


def stop_task(session: dict) -> None:
    """Stop the task running in this session (API clients: call it from the same Client)."""
    cancel = session.get("cancel")
    if cancel is not None:
        cancel.set()


def _task_stream(tab: TabContext, documents, settings: tuple, session: dict | None, progress: gr.Progress, start,
                 show: Callable[[str], str] = untrusted.markdown):  # fmt: skip
    """Check the inputs, then stream the task that `start(paths, options)` begins; its text is
    shown through `show` (by default as Markdown that cannot load anything)."""
    workbench = tab.workbench
    with user_errors():
        paths = file_list(documents)
        options = make_options(workbench, session, *settings)
    yield from stream_outputs(workbench, lambda: start(paths, options), _progress_bar(progress), show)


def _request_task(tab: TabContext, run_task: Callable, description: str) -> Callable:
    """The handler of a task with one request text (a question, an instruction) besides the
    documents and the settings: `run_task(paths, request, options)` streams its events."""

    def handler(
        documents: list[str] | None,
        request: str,
        language: str = "auto",
        max_new_tokens: float = 512,
        temperature: float = 0.0,
        strategy: str = "auto",
        context_budget: float = 0,
        password: str = "",
        session: dict | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's documented way to get a progress bar)
    ):
        settings = (language, max_new_tokens, temperature, strategy, context_budget)
        start = lambda paths, options: run_task(paths, request, options, password=password or None)  # noqa: E731
        yield from _task_stream(tab, documents, settings, session, progress, start)

    handler.__doc__ = description
    return handler


def _progress_bar(progress: gr.Progress) -> Callable[[Progress], None]:
    """Show a task's named steps on Gradio's progress bar (counted steps as k of n)."""

    def report(event: Progress) -> None:
        if event.step is not None and event.total:
            progress((event.step - 1, event.total), desc=event.message)
        else:
            progress(None, desc=event.message)

    return report


def summarize_tab(tab: TabContext) -> None:
    workbench = tab.workbench
    with gr.Tab("Summarize"):
        run, stop = _run_and_stop("Summarize", "summarize")
        output = _output_area(
            "summarize",
            _answer_box("Summary", "summarize", min_height=160),
        )

    def summarize(
        documents: list[str] | None,
        language: str = "auto",
        max_new_tokens: float = 512,
        temperature: float = 0.0,
        strategy: str = "auto",
        context_budget: float = 0,
        password: str = "",
        session: dict | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's documented way to get a progress bar)
    ):
        """Summarize the documents. Streams (summary so far, steps and status, sources, details)."""
        settings = (language, max_new_tokens, temperature, strategy, context_budget)
        start = lambda paths, options: workbench.summarize(paths, options, password=password or None)  # noqa: E731
        yield from _task_stream(tab, documents, settings, session, progress, start)

    inputs = [tab.files, *tab.settings.inputs, tab.password, tab.session]
    _wire(tab, run, stop, summarize, inputs, output, "summarize")


def ask_tab(tab: TabContext) -> None:
    with gr.Tab("Ask"):
        history = gr.State([])  # this session's questions and answers, cleared with the documents
        question = gr.Textbox(
            label="Question", placeholder="What does the document say about…?", lines=2, elem_id="question"
        )
        run, stop = _run_and_stop("Ask", "ask")
        output = _output_area("ask", _answer_box("Answer", "ask"))
        with gr.Accordion("Questions in this session", open=True, visible=False, elem_id="ask-history") as past:
            chat = gr.Chatbot(show_label=False, height=320, allow_tags=False, **MARKDOWN_OPTIONS)
        examples = example_documents()
        if examples and examples[0].suffix.lower() == ".pdf":
            gr.Examples(
                examples=[[[str(examples[0])], question] for question in EXAMPLE_QUESTIONS],
                inputs=[tab.files, question],
                label="Example questions",
            )

    ask = _request_task(
        tab,
        tab.workbench.ask,
        "Answer a question about the documents, with sources. Streams (answer, steps, sources, details).",
    )

    inputs = [tab.files, question, *tab.settings.inputs, tab.password, tab.session]
    for event in _wire(tab, run, stop, ask, inputs, output, "ask", extra=[question.submit]):
        event.success(
            remember_answer, inputs=[output.details, history], outputs=[history, chat, past], api_visibility="private"
        )
    tab.files.change(forget_answers, outputs=[history, chat, past], api_visibility="private")


EXAMPLE_QUESTIONS = ("When did the Munich office open?", "What was the revenue in 2025, and how did it change?")


def remember_answer(details: dict | None, history: list[dict]):
    """Add a finished answer to this session's history (shown under the answer): the question as
    written, the answer as Markdown that cannot load anything."""
    view = ResultView.from_json(details or {})
    if view.task == "ask":
        places = [line.heading for line in view.sources if line.kind == "source"][:4]
        pages = untrusted.plain("; ".join(places))
        answer = untrusted.markdown(view.text or "(no answer)")
        history = [
            *history,
            {"role": "user", "content": untrusted.plain(view.request[1] if view.request else "")},
            {"role": "assistant", "content": answer + (f"\n\n*Sources: {pages}*" if pages else "")},
        ]
    count = len(history) // 2
    label = f"Questions in this session ({count})"
    return history, history, gr.Accordion(label=label, visible=bool(history))


def forget_answers():
    """New documents: the earlier answers were about other ones."""
    return [], [], gr.Accordion(visible=False)


def extract_tab(tab: TabContext) -> None:
    workbench = tab.workbench
    with gr.Tab("Extract"):
        fields = gr.Textbox(label="Fields (comma-separated)", placeholder="title, author, date, total amount")
        with gr.Accordion("…or a JSON schema of an object", open=False):
            schema = gr.Code(language="json", label="JSON schema", value="", elem_id="extract-schema")
        run, stop = _run_and_stop("Extract", "extract")
        output = _output_area("extract", gr.Code(language="json", label="Extracted JSON", elem_id="extract-output"))

    def extract(
        documents: list[str] | None,
        fields: str = "",
        schema: str = "",
        language: str = "auto",
        max_new_tokens: float = 512,
        temperature: float = 0.0,
        strategy: str = "auto",
        context_budget: float = 0,
        password: str = "",
        session: dict | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ):
        """Extract fields (or a JSON schema's object) as JSON. Streams (JSON, steps and status, sources, details)."""
        settings = (language, max_new_tokens, temperature, strategy, context_budget)

        def start(paths: list[str], options: TaskOptions):
            spec = spec_from_schema(schema) if (schema or "").strip() else spec_from_fields(fields or "")
            return workbench.extract(paths, spec, options, password=password or None)

        yield from _task_stream(tab, documents, settings, session, progress, start, show=str)  # gr.Code: plain

    inputs = [tab.files, fields, schema, *tab.settings.inputs, tab.password, tab.session]
    _wire(tab, run, stop, extract, inputs, output, "extract")


def classify_tab(tab: TabContext) -> None:
    workbench = tab.workbench
    with gr.Tab("Classify"):
        labels = gr.Textbox(label="Labels (comma-separated)", placeholder="invoice, contract, report, letter")
        run, stop = _run_and_stop("Classify", "classify")
        output = _output_area(
            "classify",
            gr.Label(label="Most likely label", num_top_classes=10, elem_id="classify-output"),
            with_sources=False,
        )

    def classify(
        documents: list[str] | None,
        labels: str,
        language: str = "auto",
        max_new_tokens: float = 512,
        temperature: float = 0.0,
        strategy: str = "auto",
        context_budget: float = 0,
        password: str = "",
        session: dict | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ):
        """Classify the documents: every label with its probability. Yields (labels, steps and status, details)."""
        settings = (language, max_new_tokens, temperature, strategy, context_budget)
        start = lambda paths, options: workbench.classify(paths, labels, options, password=password or None)  # noqa: E731
        for _text, status, _sources, details in _task_stream(tab, documents, settings, session, progress, start):
            probabilities = dict(ResultView.from_json(details).labels)
            yield probabilities or None, status, details

    inputs = [tab.files, labels, *tab.settings.inputs, tab.password, tab.session]
    streamed = [output.text, output.steps, output.details]
    _wire(tab, run, stop, classify, inputs, output, "classify", streamed=streamed)


def custom_tab(tab: TabContext) -> None:
    with gr.Tab("Custom prompt"):
        instruction = gr.Textbox(
            label="Your instruction",
            placeholder="List every deadline in the document with its page, as a bulleted list.",
            lines=3,
        )
        run, stop = _run_and_stop("Run", "custom")
        output = _output_area(
            "custom",
            _answer_box("Response", "custom"),
        )

    custom = _request_task(
        tab,
        tab.workbench.custom,
        "Run your own instruction on the documents, with sources. Streams (response, steps, sources, details).",
    )

    inputs = [tab.files, instruction, *tab.settings.inputs, tab.password, tab.session]
    _wire(tab, run, stop, custom, inputs, output, "custom")

"""The named API endpoints (`summarize`, `ask`, `extract`, `classify`, `custom`, `stop_<task>`):
one `gradio_client` call does a whole job, documents included, without a UI session.

Their parameters are plain values in a fixed order: the documents, the task's own inputs, the
settings, then the PDF password (optional); each streams (text, steps and status, sources as
Markdown, details). They are wired to hidden triggers: the page's own buttons run richer events
(app.tabs, app.chat) over the same Workbench, so the page can change without breaking callers.
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from app import untrusted
from app.gpu import on_spaces_gpu
from app.inputs import file_list, make_options, user_errors
from app.results import ResultView
from app.streaming import stream_outputs
from app.untrusted import MARKDOWN_OPTIONS
from tasks.budget import STRATEGY_CHOICES
from tasks.documents import SUPPORTED_SUFFIXES
from tasks.events import Progress
from tasks.extract import spec_from_fields, spec_from_schema
from tasks.language import LANGUAGES
from tasks.options import TaskOptions
from tasks.workbench import Workbench

SETTING_DEFAULTS = ("auto", 512, 0.0, "auto", 0)  # language, max new tokens, temperature, strategy, budget
LANGUAGE_CHOICES = [("Auto", "auto")] + [
    (f"{native} ({english})" if native != english else english, code) for code, (english, native) in LANGUAGES.items()
]


def stop_task(session: dict) -> None:
    """Stop the task running in this session (API clients: call it from the same Client)."""
    cancel = (session or {}).get("cancel")
    if cancel is not None:
        cancel.set()


def api_endpoints(workbench: Workbench, session: gr.State) -> None:
    """Every task's endpoint, on hidden components (nothing on the page triggers them)."""
    # The same components, with the same defaults, as the page's own inputs: the API's parameters
    # (their types, choices and which are optional) are what they were when these were the page's.
    documents = gr.File(file_count="multiple", file_types=list(SUPPORTED_SUFFIXES), type="filepath", visible=False)
    texts = [gr.Textbox(visible=False), gr.Code(language="json", value="", visible=False)]
    language, max_new_tokens, temperature, strategy, budget = SETTING_DEFAULTS
    settings = [gr.Dropdown(LANGUAGE_CHOICES, value=language, visible=False),
                gr.Number(value=max_new_tokens, step=1, visible=False),
                gr.Number(value=temperature, step=0.05, visible=False),
                gr.Dropdown(list(STRATEGY_CHOICES), value=strategy, visible=False),
                gr.Number(value=budget, step=1, visible=False)]  # fmt: skip
    password = gr.Textbox(value="", type="password", visible=False)
    outputs = [gr.Markdown(visible=False, **MARKDOWN_OPTIONS) for _ in range(3)] + [gr.JSON(visible=False)]
    label = gr.Label(visible=False)
    handlers = _handlers(workbench)
    one_model = {"concurrency_id": "model", "concurrency_limit": workbench.concurrency}
    for name, (handler, own_inputs) in handlers.items():
        trigger = gr.Button(visible=False)
        inputs = [documents, *texts[:own_inputs], *settings, password, session]
        shown = [label, outputs[1], outputs[3]] if name == "classify" else outputs
        if not workbench.on_server:
            handler = on_spaces_gpu(handler)
        trigger.click(handler, inputs=inputs, outputs=shown, api_name=name, **one_model)
        stop = gr.Button(visible=False)
        stop.click(stop_task, inputs=[session], queue=False, api_name=f"stop_{name}", api_visibility="undocumented")


def _handlers(workbench: Workbench) -> dict[str, tuple[Callable, int]]:
    def summarize(documents: list[str] | None, language: str = "auto", max_new_tokens: float = 512,
                  temperature: float = 0.0, strategy: str = "auto", context_budget: float = 0, password: str = "",
                  session: dict | None = None, progress: gr.Progress = gr.Progress()):  # noqa: B008  # fmt: skip
        """Summarize the documents. Streams (summary so far, steps and status, sources, details)."""
        settings = (language, max_new_tokens, temperature, strategy, context_budget)
        start = lambda paths, options: workbench.summarize(paths, options, password=password or None)  # noqa: E731
        yield from _task_stream(workbench, documents, settings, session, progress, start)

    def extract(documents: list[str] | None, fields: str = "", schema: str = "", language: str = "auto",
                max_new_tokens: float = 512, temperature: float = 0.0, strategy: str = "auto",
                context_budget: float = 0, password: str = "", session: dict | None = None,
                progress: gr.Progress = gr.Progress()):  # noqa: B008  # fmt: skip
        """Extract fields (or a JSON schema's object) as JSON. Streams (JSON, steps and status, sources, details)."""
        settings = (language, max_new_tokens, temperature, strategy, context_budget)

        def start(paths: list[str], options: TaskOptions):
            spec = spec_from_schema(schema) if (schema or "").strip() else spec_from_fields(fields or "")
            return workbench.extract(paths, spec, options, password=password or None)

        yield from _task_stream(workbench, documents, settings, session, progress, start, show=str)

    def classify(documents: list[str] | None, labels: str, language: str = "auto", max_new_tokens: float = 512,
                 temperature: float = 0.0, strategy: str = "auto", context_budget: float = 0, password: str = "",
                 session: dict | None = None, progress: gr.Progress = gr.Progress()):  # noqa: B008  # fmt: skip
        """Classify the documents: every label with its probability. Yields (labels, steps and status, details)."""
        settings = (language, max_new_tokens, temperature, strategy, context_budget)
        start = lambda paths, options: workbench.classify(paths, labels, options, password=password or None)  # noqa: E731
        for _text, status, _sources, details in _task_stream(workbench, documents, settings, session, progress, start):
            probabilities = dict(ResultView.from_json(details).labels)
            yield probabilities or None, status, details

    ask = _request_task(workbench, workbench.ask, "Answer a question about the documents, with sources. "
                        "Streams (answer, steps, sources, details).")  # fmt: skip
    custom = _request_task(workbench, workbench.custom, "Run your own instruction on the documents, with "
                           "sources. Streams (response, steps, sources, details).")  # fmt: skip
    return {"summarize": (summarize, 0), "ask": (ask, 1), "extract": (extract, 2), "classify": (classify, 1),
            "custom": (custom, 1)}  # fmt: skip


def _task_stream(workbench: Workbench, documents, settings: tuple, session: dict | None, progress: gr.Progress,
                 start, show: Callable[[str], str] = untrusted.markdown):  # fmt: skip
    """Check the inputs, then stream the task that `start(paths, options)` begins."""
    with user_errors():
        paths = file_list(documents)
        options = make_options(workbench, session, *settings)
    yield from stream_outputs(workbench, lambda: start(paths, options), _progress_bar(progress), show)


def _request_task(workbench: Workbench, run_task: Callable, description: str) -> Callable:
    """The handler of a task with one request text (a question, an instruction)."""

    def handler(documents: list[str] | None, request: str, language: str = "auto", max_new_tokens: float = 512,
                temperature: float = 0.0, strategy: str = "auto", context_budget: float = 0, password: str = "",
                session: dict | None = None, progress: gr.Progress = gr.Progress()):  # noqa: B008  # fmt: skip
        settings = (language, max_new_tokens, temperature, strategy, context_budget)
        start = lambda paths, options: run_task(paths, request, options, password=password or None)  # noqa: E731
        yield from _task_stream(workbench, documents, settings, session, progress, start)

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

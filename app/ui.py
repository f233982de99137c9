"""The Gradio UI: a thin layer over the Workbench. One small builder per panel or tab.

Every task button is also a named API endpoint (`summarize`, `ask`, `extract`, `classify`,
`info`) that takes the document files themselves, so one `gradio_client` call does a whole job
without a UI session.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.handlers import (
    DEMO_NOTE,
    describe_documents,
    file_list,
    make_options,
    stream_outputs,
    user_errors,
)
from tasks.budget import STRATEGY_CHOICES
from tasks.documents import SUPPORTED_SUFFIXES
from tasks.extract import spec_from_fields, spec_from_schema
from tasks.language import LANGUAGES
from tasks.pipeline import MAX_NEW_TOKENS_LIMIT
from tasks.workbench import Workbench

TITLE = "Granite Long-Doc"
# All generating events share one queue slot: the model runs one generation at a time.
ONE_AT_A_TIME = {"concurrency_id": "model", "concurrency_limit": 1}
CSS = """
#status-line {font-size: 0.9em; opacity: 0.85}
#demo-warning {border-left: 4px solid #f59e0b; padding-left: 0.6em}
"""
LANGUAGE_CHOICES = [("Auto: the document's language", "auto")] + [
    (f"{native} ({english})" if native != english else english, code) for code, (english, native) in LANGUAGES.items()
]


@dataclass
class Settings:
    """The shared task settings, passed to every task in this order."""

    language: gr.Dropdown
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    strategy: gr.Dropdown
    budget: gr.Number

    @property
    def inputs(self) -> list:
        return [self.language, self.max_new_tokens, self.temperature, self.strategy, self.budget]


def build_ui(workbench: Workbench) -> gr.Blocks:
    """Build the whole page for `workbench` (nothing global: one page per workbench)."""
    with gr.Blocks(title=TITLE) as demo:
        session = gr.State({})  # per browser session: the cancel switch of its running task
        _header(workbench)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                files, card = _documents_panel()
                settings = _settings_panel()
            with gr.Column(scale=2):
                with gr.Tabs():
                    _summarize_tab(workbench, files, settings, session)
                    _ask_tab(workbench, files, settings, session)
                    _extract_tab(workbench, files, settings, session)
                    _classify_tab(workbench, files, settings, session)
        _wire_card(workbench, files, card, settings)
    return demo


def _header(workbench: Workbench) -> None:
    gr.Markdown(f"# {TITLE}\nSummarize long documents, ask questions with page citations, extract fields, classify.")
    if workbench.engine is None:
        gr.Markdown(
            f"**Generation is unavailable:** {workbench.unavailable_reason}  \nThe document tools below still work.",
            elem_id="demo-warning",
        )
    elif workbench.demo_model:
        gr.Markdown(f"**Demo model.** {DEMO_NOTE} Start with a real model to get real answers.", elem_id="demo-warning")
    gr.Markdown(f"Model: {workbench.model_status}", elem_id="status-line")


def _documents_panel() -> tuple[gr.File, tuple[gr.Markdown, gr.JSON]]:
    files = gr.File(
        label="Documents (PDF, DOCX, HTML, TXT, Markdown)",
        file_count="multiple",
        file_types=list(SUPPORTED_SUFFIXES),
        type="filepath",
    )
    card = gr.Markdown("No documents yet. Upload PDF, DOCX, HTML, TXT or Markdown files.")
    card_json = gr.JSON(visible=False)
    return files, (card, card_json)


def _settings_panel() -> Settings:
    language = gr.Dropdown(LANGUAGE_CHOICES, value="auto", label="Output language")
    with gr.Accordion("Advanced", open=False):
        max_new_tokens = gr.Slider(1, MAX_NEW_TOKENS_LIMIT, value=512, step=1, label="Max new tokens")
        temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
        strategy = gr.Dropdown(list(STRATEGY_CHOICES), value="auto", label="Strategy for long documents")
        budget = gr.Number(value=0, precision=0, minimum=0, label="Context budget in tokens (0 = the default)")
    return Settings(language, max_new_tokens, temperature, strategy, budget)


def _wire_card(workbench: Workbench, files: gr.File, card: tuple, settings: Settings) -> None:
    def info(documents: list[str] | None, strategy: str = "auto", context_budget: float = 0):
        """Describe documents: pages, language, tokens against the budget, strategies, expected wait."""
        options = make_options(workbench, None, "auto", 512, 0.0, strategy, context_budget)
        return describe_documents(workbench, documents, options)

    inputs = [files, settings.strategy, settings.budget]
    files.change(info, inputs=inputs, outputs=list(card), api_name="info")
    for control in (settings.strategy, settings.budget):
        control.change(info, inputs=inputs, outputs=list(card), api_visibility="private")


def _run_and_stop(label: str) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        run = gr.Button(label, variant="primary", scale=4)
        stop = gr.Button("Stop", variant="stop", scale=1)
    return run, stop


def _output_area(text: gr.components.Component) -> list:
    status = gr.Markdown(elem_id="status-line")
    with gr.Accordion("Sources", open=True):
        sources = gr.Markdown()
    with gr.Accordion("Details (JSON)", open=False):
        details = gr.JSON(label="Result")
    return [text, status, sources, details]


def _wire(run: gr.Button, stop: gr.Button, handler, inputs: list, outputs: list, name: str, extra=()) -> None:
    """`run` (and `extra` triggers) start `handler`; `stop` sets the session's cancel switch, so
    the engine stops within a token (or a prefill chunk) and the result so far is shown."""
    run.click(handler, inputs=inputs, outputs=outputs, api_name=name, **ONE_AT_A_TIME)
    for trigger in extra:
        trigger(handler, inputs=inputs, outputs=outputs, api_visibility="private", **ONE_AT_A_TIME)
    stop.click(stop_task, inputs=inputs[-1:], queue=False, api_name=f"stop_{name}", api_visibility="undocumented")


def stop_task(session: dict) -> None:
    """Stop the task running in this session (API clients: call it from the same Client)."""
    cancel = session.get("cancel")
    if cancel is not None:
        cancel.set()


def _summarize_tab(workbench: Workbench, files: gr.File, settings: Settings, session: gr.State) -> None:
    with gr.Tab("Summarize"):
        run, stop = _run_and_stop("Summarize")
        outputs = _output_area(gr.Markdown(label="Summary", container=True, min_height=160, buttons=["copy"]))

    def summarize(
        documents: list[str] | None,
        language: str = "auto",
        max_new_tokens: float = 512,
        temperature: float = 0.0,
        strategy: str = "auto",
        context_budget: float = 0,
        session: dict | None = None,
    ):
        """Summarize the documents. Streams (summary so far, status, sources, details)."""
        with user_errors():
            paths = file_list(documents)
            options = make_options(workbench, session, language, max_new_tokens, temperature, strategy, context_budget)
        yield from stream_outputs(workbench, lambda: workbench.summarize(paths, options))

    _wire(run, stop, summarize, [files, *settings.inputs, session], outputs, "summarize")


def _ask_tab(workbench: Workbench, files: gr.File, settings: Settings, session: gr.State) -> None:
    with gr.Tab("Ask"):
        question = gr.Textbox(label="Question", placeholder="What does the document say about…?", lines=2)
        run, stop = _run_and_stop("Ask")
        outputs = _output_area(gr.Markdown(label="Answer", container=True, min_height=120, buttons=["copy"]))

    def ask(
        documents: list[str] | None,
        question: str,
        language: str = "auto",
        max_new_tokens: float = 512,
        temperature: float = 0.0,
        strategy: str = "auto",
        context_budget: float = 0,
        session: dict | None = None,
    ):
        """Answer a question about the documents, with sources. Streams (answer, status, sources, details)."""
        with user_errors():
            paths = file_list(documents)
            options = make_options(workbench, session, language, max_new_tokens, temperature, strategy, context_budget)
        yield from stream_outputs(workbench, lambda: workbench.ask(paths, question, options))

    _wire(run, stop, ask, [files, question, *settings.inputs, session], outputs, "ask", extra=[question.submit])


def _extract_tab(workbench: Workbench, files: gr.File, settings: Settings, session: gr.State) -> None:
    with gr.Tab("Extract"):
        fields = gr.Textbox(label="Fields (comma-separated)", placeholder="title, author, date, total amount")
        with gr.Accordion("…or a JSON schema of an object", open=False):
            schema = gr.Code(language="json", label="JSON schema", value="")
        run, stop = _run_and_stop("Extract")
        outputs = _output_area(gr.Code(language="json", label="Extracted JSON"))

    def extract(
        documents: list[str] | None,
        fields: str = "",
        schema: str = "",
        language: str = "auto",
        max_new_tokens: float = 512,
        temperature: float = 0.0,
        strategy: str = "auto",
        context_budget: float = 0,
        session: dict | None = None,
    ):
        """Extract fields (or a JSON schema's object) as JSON. Streams (JSON, status, sources, details)."""
        with user_errors():
            paths = file_list(documents)
            spec = spec_from_schema(schema) if (schema or "").strip() else spec_from_fields(fields or "")
            options = make_options(workbench, session, language, max_new_tokens, temperature, strategy, context_budget)
        yield from stream_outputs(workbench, lambda: workbench.extract(paths, spec, options))

    _wire(run, stop, extract, [files, fields, schema, *settings.inputs, session], outputs, "extract")


def _classify_tab(workbench: Workbench, files: gr.File, settings: Settings, session: gr.State) -> None:
    with gr.Tab("Classify"):
        labels = gr.Textbox(label="Labels (comma-separated)", placeholder="invoice, contract, report, letter")
        run, stop = _run_and_stop("Classify")
        label = gr.Label(label="Most likely label", num_top_classes=10)
        status = gr.Markdown(elem_id="status-line")
        with gr.Accordion("Details (JSON)", open=False):
            details = gr.JSON(label="Result")

    def classify(
        documents: list[str] | None,
        labels: str,
        language: str = "auto",
        max_new_tokens: float = 512,
        temperature: float = 0.0,
        strategy: str = "auto",
        context_budget: float = 0,
        session: dict | None = None,
    ):
        """Classify the documents: every label with its probability. Yields (labels, status, details)."""
        with user_errors():
            paths = file_list(documents)
            options = make_options(workbench, session, language, max_new_tokens, temperature, strategy, context_budget)
        for _text, status, _sources, details in stream_outputs(
            workbench, lambda: workbench.classify(paths, labels, options)
        ):
            probabilities = {row["label"]: row["probability"] for row in details.get("labels", [])}
            yield probabilities or None, status, details

    _wire(run, stop, classify, [files, labels, *settings.inputs, session], [label, status, details], "classify")

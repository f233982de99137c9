"""The task tabs of the web UI (Summarize, Extract, Classify, Custom prompt; Ask is app.chat):
one builder per tab, wired with what app.panels gives them all."""

from __future__ import annotations

import gradio as gr

from app import untrusted
from app.chat import answer_markdown
from app.i18n import browser_language, label
from app.panels import (
    ResultArea,
    TabContext,
    answer_box,
    exports,
    file_names,
    frames,
    result_area,
    run_and_stop,
    wire_run,
)
from app.results import ResultView
from app.runs import Frame
from app.sources_view import sources_html
from tasks.extract import spec_from_fields, spec_from_schema


def summarize_tab(tab: TabContext) -> ResultArea:
    workbench = tab.workbench
    with gr.Tab(label("tab.summarize"), id="summarize"):
        run, stop = run_and_stop(tab, "run.summarize", "summarize")
        area = result_area("summarize", answer_box("output.summary", "summarize", min_height=160))

    def summarize(
        documents,
        loaded,
        language,
        max_new_tokens,
        temperature,
        strategy,
        budget,
        password,
        session,
        registry,
        request: gr.Request,
    ):
        settings = (language, max_new_tokens, temperature, strategy, budget)
        start = lambda paths, options: workbench.summarize(paths, options, password=password or None)  # noqa: E731
        for frame, paths in frames(tab, documents, loaded, settings, session, request, start):
            sources = ""
            if frame.details:
                registry.remember("summarize", frame.details, file_names(workbench, paths))
                sources = sources_html(frame.details, "summarize", browser_language(request))
            files = exports(frame.details, tab.keep_seconds)
            yield summary_markdown(frame), frame.progress, sources, frame.details, *files, registry

    outputs = [area.output, area.progress, area.sources, area.details, area.export_markdown, area.export_json,
               tab.registry]  # fmt: skip
    wire_run(tab, run, stop, summarize, tab.task_inputs(), outputs)
    return area


def summary_markdown(frame: Frame) -> str:
    """While the parts are summarized, each part's summary as it is finished; at the end the
    summary, with the parts collapsed under it."""
    parts = "\n\n".join(
        f"**{part.number} / {part.total} · {untrusted.plain(part.document)}, {_pages(part.pages)}**\n\n"
        f"{untrusted.markdown(part.text)}"
        for part in frame.parts
    )
    if not frame.text:
        return parts
    if not parts:
        return untrusted.markdown(frame.text)
    folded = f"<details><summary>{len(frame.parts)} parts</summary>\n\n{parts}\n\n</details>"
    return f"{untrusted.markdown(frame.text)}\n\n{folded}"


def _pages(pages: tuple[int, ...]) -> str:
    return f"p. {pages[0]}" if pages[0] == pages[-1] else f"p. {pages[0]}-{pages[-1]}"


def extract_tab(tab: TabContext) -> ResultArea:
    workbench = tab.workbench
    with gr.Tab(label("tab.extract"), id="extract"):
        fields = gr.Textbox(label=label("extract.fields"), placeholder=label("extract.fields_placeholder"),
                            lines=1, max_lines=1, elem_id="extract-fields")  # fmt: skip
        with gr.Accordion(label("extract.schema_box"), open=False):
            schema = gr.Code(language="json", label=label("extract.schema"), value="", elem_id="extract-schema")
        run, stop = run_and_stop(tab, "run.extract", "extract")
        output = gr.Code(language="json", label=label("output.extracted"), elem_id="extract-output", render=False)
        area = result_area("extract", output)

    def extract(
        documents,
        loaded,
        fields_text,
        schema_text,
        language,
        max_new_tokens,
        temperature,
        strategy,
        budget,
        password,
        session,
        registry,
        request: gr.Request,
    ):
        settings = (language, max_new_tokens, temperature, strategy, budget)

        def start(paths, options):
            spec = spec_from_schema(schema_text) if (schema_text or "").strip() else spec_from_fields(fields_text or "")
            return workbench.extract(paths, spec, options, password=password or None)

        for frame, paths in frames(tab, documents, loaded, settings, session, request, start):
            sources = ""
            if frame.details:
                registry.remember("extract", frame.details, file_names(workbench, paths))
                sources = sources_html(frame.details, "extract", browser_language(request))
            yield (frame.text, frame.progress, sources, frame.details, *exports(frame.details, tab.keep_seconds),
                   registry)  # fmt: skip

    outputs = [area.output, area.progress, area.sources, area.details, area.export_markdown, area.export_json,
               tab.registry]  # fmt: skip
    wire_run(tab, run, stop, extract, tab.task_inputs(fields, schema), outputs, triggers=(fields.submit,))
    return area


def classify_tab(tab: TabContext) -> ResultArea:
    workbench = tab.workbench
    with gr.Tab(label("tab.classify"), id="classify"):
        labels = gr.Textbox(label=label("classify.labels"), placeholder=label("classify.placeholder"), lines=1,
                            max_lines=1, elem_id="classify-labels")  # fmt: skip
        run, stop = run_and_stop(tab, "run.classify", "classify")
        output = gr.Label(label=label("output.label"), num_top_classes=10, elem_id="classify-output", render=False)
        area = result_area("classify", output, with_sources=False)

    def classify(
        documents,
        loaded,
        labels_text,
        language,
        max_new_tokens,
        temperature,
        strategy,
        budget,
        password,
        session,
        _registry,
        request: gr.Request,
    ):
        settings = (language, max_new_tokens, temperature, strategy, budget)
        start = lambda paths, options: workbench.classify(paths, labels_text, options, password=password or None)  # noqa: E731
        for frame, _paths in frames(tab, documents, loaded, settings, session, request, start):
            probabilities = dict(ResultView.from_json(frame.details).labels) if frame.details else None
            yield probabilities or None, frame.progress, frame.details, *exports(frame.details, tab.keep_seconds)

    outputs = [area.output, area.progress, area.details, area.export_markdown, area.export_json]
    wire_run(tab, run, stop, classify, tab.task_inputs(labels), outputs, triggers=(labels.submit,))
    return area


def custom_tab(tab: TabContext) -> ResultArea:
    workbench = tab.workbench
    with gr.Tab(label("tab.custom"), id="custom"):
        instruction = gr.Textbox(label=label("custom.instruction"), placeholder=label("custom.placeholder"),
                                 lines=3, elem_id="custom-instruction", info=label("run.shortcut"))  # fmt: skip
        run, stop = run_and_stop(tab, "run.custom", "custom")
        area = result_area("custom", answer_box("output.response", "custom"))

    def custom(
        documents,
        loaded,
        instruction_text,
        language,
        max_new_tokens,
        temperature,
        strategy,
        budget,
        password,
        session,
        registry,
        request: gr.Request,
    ):
        settings = (language, max_new_tokens, temperature, strategy, budget)
        start = lambda paths, options: workbench.custom(paths, instruction_text, options, password=password or None)  # noqa: E731
        for frame, paths in frames(tab, documents, loaded, settings, session, request, start):
            sources = ""
            if frame.details:
                registry.remember("custom", frame.details, file_names(workbench, paths))
                sources = sources_html(frame.details, "custom", browser_language(request))
            text = answer_markdown(frame.text, (frame.details or {}).get("citations"))
            yield (text, frame.progress, sources, frame.details, *exports(frame.details, tab.keep_seconds),
                   registry)  # fmt: skip

    outputs = [area.output, area.progress, area.sources, area.details, area.export_markdown, area.export_json,
               tab.registry]  # fmt: skip
    wire_run(tab, run, stop, custom, tab.task_inputs(instruction), outputs)
    return area

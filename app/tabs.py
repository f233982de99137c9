"""The task tabs of the web UI (Summarize, Extract, Classify, Custom prompt; Ask is app.chat):
one builder per tab, wired with what app.panels gives them all."""

from __future__ import annotations

import gradio as gr

from app import untrusted
from app.chat import answer_markdown
from app.i18n import label
from app.panels import ResultArea, TabContext, answer_box, result_area, run_and_stop, task_handler, wire_run
from app.results import ResultView
from app.runs import Frame
from tasks.extract import spec_from_fields, spec_from_schema


def summarize_tab(tab: TabContext) -> ResultArea:
    workbench = tab.workbench
    with gr.Tab(label("tab.summarize"), id="summarize"):
        run, stop = run_and_stop(tab, "run.summarize", "summarize")
        area = result_area("summarize", answer_box("output.summary", "summarize", min_height=160))

    def begin(_own, paths, options, password):
        return workbench.summarize(paths, options, password=password)

    def shape(frame, sources, files, registry):
        return summary_markdown(frame), frame.progress, sources, frame.details, *files, registry

    wire_run(tab, run, stop, task_handler(tab, "summarize", begin, shape), tab.task_inputs(), _outputs(tab, area))
    return area


def _outputs(tab: TabContext, area: ResultArea) -> list:
    return [area.output, area.progress, area.sources, area.details, area.export_markdown, area.export_json,
            tab.registry]  # fmt: skip


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

    def begin(own, paths, options, password):
        fields_text, schema_text = own
        spec = spec_from_schema(schema_text) if (schema_text or "").strip() else spec_from_fields(fields_text or "")
        return workbench.extract(paths, spec, options, password=password)

    def shape(frame, sources, files, registry):
        return frame.text, frame.progress, sources, frame.details, *files, registry  # gr.Code: plain text

    handler = task_handler(tab, "extract", begin, shape)
    wire_run(tab, run, stop, handler, tab.task_inputs(fields, schema), _outputs(tab, area), triggers=(fields.submit,))
    return area


def classify_tab(tab: TabContext) -> ResultArea:
    workbench = tab.workbench
    with gr.Tab(label("tab.classify"), id="classify"):
        labels = gr.Textbox(label=label("classify.labels"), placeholder=label("classify.placeholder"), lines=1,
                            max_lines=1, elem_id="classify-labels")  # fmt: skip
        run, stop = run_and_stop(tab, "run.classify", "classify")
        output = gr.Label(label=label("output.label"), num_top_classes=10, elem_id="classify-output", render=False)
        area = result_area("classify", output, with_sources=False)

    def begin(own, paths, options, password):
        return workbench.classify(paths, own[0], options, password=password)

    def shape(frame, _sources, files, _registry):
        probabilities = dict(ResultView.from_json(frame.details).labels) if frame.details else None
        return probabilities or None, frame.progress, frame.details, *files

    outputs = [area.output, area.progress, area.details, area.export_markdown, area.export_json]
    handler = task_handler(tab, None, begin, shape)
    wire_run(tab, run, stop, handler, tab.task_inputs(labels), outputs, triggers=(labels.submit,))
    return area


def custom_tab(tab: TabContext) -> ResultArea:
    workbench = tab.workbench
    with gr.Tab(label("tab.custom"), id="custom"):
        instruction = gr.Textbox(label=label("custom.instruction"), placeholder=label("custom.placeholder"),
                                 lines=3, elem_id="custom-instruction", info=label("run.shortcut"))  # fmt: skip
        run, stop = run_and_stop(tab, "run.custom", "custom")
        area = result_area("custom", answer_box("output.response", "custom"))

    def begin(own, paths, options, password):
        return workbench.custom(paths, own[0], options, password=password)

    def shape(frame, sources, files, registry):
        text = answer_markdown(frame.text, (frame.details or {}).get("citations"))
        return text, frame.progress, sources, frame.details, *files, registry

    handler = task_handler(tab, "custom", begin, shape)
    wire_run(tab, run, stop, handler, tab.task_inputs(instruction), _outputs(tab, area))
    return area

"""The Ask tab: a conversation about the documents.

One thread per browser session (`gr.Chatbot`), the question box at the bottom (Enter sends,
Shift+Enter adds a line; the box clears when the question is sent), Stop while an answer is
written, copy and retry on every answer. Follow-up questions reuse the session's prefilled
document (the engine's prefix cache). Answers carry markers [1], [2] for the sentences they
drew on; the page script makes them buttons that open the viewer. The thread is cleared, with
a notice, when the documents change: its answers were about other files.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

import gradio as gr

from app import untrusted
from app.i18n import label, text
from app.panels import (
    EXAMPLES_DIR,
    ResultArea,
    TabContext,
    example_documents,
    exports,
    frames,
    page_language,
    remembered,
    wire_run,
)
from app.untrusted import MARKDOWN_OPTIONS

EXAMPLE_QUESTIONS = ("When did the Munich office open?", "What was the revenue in 2025, and how did it change?")
# Our markers end with a word joiner (U+2060, invisible); the page script makes buttons of those
# alone. So the model's text loses every word joiner, every "[" before a digit gets an invisible
# space, and every character reference (`&#91;`, `&#8288;`) is shown as written, not decoded: no
# way of writing "[1]" + U+2060 in an answer survives to the page.
MARKER_END = "\u2060"
MAX_EXPORTED_ANSWERS = 200  # a thread's export holds its last answers, as many as the viewer keeps
_MODEL_BRACKET = re.compile(r"\[(?=\d)")
_CHARACTER_REFERENCE = re.compile(r"&(?=#?\w+;)")


def ask_tab(tab: TabContext) -> tuple[ResultArea, gr.Chatbot, gr.HTML]:
    with gr.Tab(label("tab.ask"), id="ask"):
        notice = gr.HTML("", elem_id="ask-notice")
        thread = gr.Chatbot(label=label("ask.thread"), elem_id="ask-thread", height=420, buttons=["copy"],
                            allow_tags=False, layout="bubble", **MARKDOWN_OPTIONS)  # fmt: skip
        with gr.Row(equal_height=True, elem_id="ask-input-row"):
            question = gr.Textbox(label=label("ask.question"), show_label=False, placeholder=label("ask.placeholder"),
                                  lines=1, max_lines=8, scale=5, elem_id="question", autofocus=False,
                                  interactive=tab.ready)  # fmt: skip
            run = gr.Button(label("ask.send"), variant="primary", scale=1, min_width=90, elem_id="ask-run",
                            interactive=tab.ready)  # fmt: skip
            stop = gr.Button(
                label("run.stop"), variant="stop", scale=1, min_width=90, elem_id="ask-stop", visible=False
            )
        examples = example_documents()
        if examples and examples[0].parent == EXAMPLES_DIR and examples[0].suffix.lower() == ".pdf":
            gr.Examples(examples=[[[str(examples[0])], q] for q in EXAMPLE_QUESTIONS], inputs=[tab.files, question],
                        example_labels=list(EXAMPLE_QUESTIONS), label=label("ask.examples"))  # fmt: skip
        progress = gr.HTML("", elem_id="ask-progress", elem_classes="run-panel")
        with gr.Accordion(label("output.sources"), open=True):
            sources = gr.HTML("", elem_id="ask-sources")
        with gr.Row():
            export_markdown = gr.DownloadButton(label("output.export_markdown"), interactive=False, size="sm",
                                                elem_id="ask-export-md")  # fmt: skip
            export_json = gr.DownloadButton(label("output.export_json"), interactive=False, size="sm",
                                            elem_id="ask-export-json")  # fmt: skip
            clear = gr.Button(label("ask.clear"), size="sm", elem_id="ask-clear")
        with gr.Accordion(label("output.details"), open=False):
            details = gr.JSON(label="Result")
    area = ResultArea("ask", thread, progress, sources, details, export_markdown, export_json)
    _wire(tab, question, run, stop, area, notice)
    clear.click(_cleared, inputs=[tab.registry], outputs=[thread, notice, *area.cleared[1:], tab.registry],
                queue=False, api_visibility="private")  # fmt: skip
    return area, thread, notice


def _wire(tab: TabContext, question: gr.Textbox, run: gr.Button, stop: gr.Button, area: ResultArea,
          notice: gr.HTML) -> None:  # fmt: skip
    workbench = tab.workbench

    def ask(documents, loaded, asked, history, *values):
        """Add `asked` to the thread and stream its answer (inputs: tab.task_inputs(question, thread))."""
        *settings, password, session, registry = values
        history = list(history or [])
        if not (asked or "").strip():  # nothing to send: the box keeps what it has
            yield asked, history, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), registry, ""
            return
        turn = sum(1 for message in history if message["role"] == "assistant")
        registry.questions = [*registry.questions[:turn], asked]
        history += [{"role": "user", "content": untrusted.plain(asked)}, {"role": "assistant", "content": "…"}]
        yield "", history, "", "", None, *exports(None, 0), registry, ""
        start = lambda paths, options: workbench.ask(paths, asked, options, password=password or None)  # noqa: E731
        for frame, paths in frames(tab, documents, loaded, tuple(settings), session, start):
            citations = (frame.details or {}).get("citations")
            history[-1] = {"role": "assistant", "content": answer_markdown(frame.text, citations) or "…"}
            if (frame.details or {}).get("finish_reason") == "empty":  # said, not left as a bubble that waits
                history[-1]["content"] = "⚠ " + untrusted.plain(text("status.empty", page_language(session)))
            if frame.error:
                history[-1]["content"] = "⚠ " + untrusted.plain(frame.error)
            sources = remembered(tab, registry, f"ask-{turn}", frame, paths, session)
            if frame.details:
                registry.answers = [*registry.answers[:turn], frame.details][-MAX_EXPORTED_ANSWERS:]
            files = exports(frame.details, tab.keep_seconds, registry.answers if frame.details else None)
            yield "", history, frame.progress, sources, frame.details, *files, registry, ""

    def retry(documents, loaded, history, *values):
        """Ask the last question again, in place of its answer (inputs as ask's, without the box)."""
        registry = values[-1]
        history = list(history or [])
        while history and history[-1]["role"] == "assistant":
            history.pop()
        if history:
            history.pop()  # the question: ask() adds it again
        asked = registry.questions[-1] if registry.questions else ""
        yield from ask(documents, loaded, asked, history, *values)

    outputs = [question, area.output, area.progress, area.sources, area.details, area.export_markdown,
               area.export_json, tab.registry, notice]  # fmt: skip
    wire_run(tab, run, stop, ask, tab.task_inputs(question, area.output), outputs, triggers=(question.submit,))
    inputs = tab.task_inputs(area.output)
    wire_run(tab, run, stop, retry, inputs, outputs, triggers=(area.output.retry,), by_run=False)


def answer_markdown(answer: str, citations: list[dict[str, Any]] | None) -> str:
    """The answer as Markdown that cannot load anything, with a marker [n] after each sentence a
    citation supports (the model's own bracketed numbers get an invisible space: never markers)."""
    pieces, cursor = [], 0
    by_anchor: dict[int, list[int]] = {}
    for citation in citations or []:
        by_anchor.setdefault(min(max(0, int(citation["anchor"])), len(answer)), []).append(citation["number"])
    for anchor in sorted(by_anchor):
        pieces.append(_safe(answer[cursor:anchor]))
        pieces.append("".join(f"\u00a0[{number}]{MARKER_END}" for number in sorted(set(by_anchor[anchor]))))
        cursor = anchor
    pieces.append(_safe(answer[cursor:]))
    return "".join(pieces)


def _safe(text: str) -> str:
    text = _CHARACTER_REFERENCE.sub("&amp;", text.replace(MARKER_END, ""))
    return untrusted.markdown(_MODEL_BRACKET.sub("[" + untrusted.ZERO_WIDTH_SPACE, text))


def cleared_thread(registry, had_thread: bool, language: str) -> tuple:
    """The thread after the documents changed: empty, with a notice when it held answers."""
    registry.forget()
    message = f'<div class="notice" role="status" dir="auto">{escape(text("ask.cleared", language))}</div>'
    return [], (message if had_thread else ""), registry


def _cleared(registry):
    registry.forget()
    return [], "", "", "", None, *exports(None, 0), registry

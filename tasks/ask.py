"""The `ask` task: answer a question from the whole documents, or from retrieved excerpts when
they are longer than the budget; with the sources and verified quotes."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from tasks.citations import cite
from tasks.documents import Document
from tasks.errors import InvalidRequest
from tasks.events import Event
from tasks.interfaces import TextEngine
from tasks.options import TaskOptions
from tasks.pipeline import make_result, plan_context, stream_answer
from tasks.planning import output_language
from tasks.prompts import engine_template
from tasks.sources import related_passages, source_list, verify_quotes

MAX_QUESTION_CHARS = 2000


def ask(documents: Sequence[Document], question: str, options: TaskOptions, engine: TextEngine) -> Iterator[Event]:
    """Stream an answer to `question`; the last event is the TaskResult (with sources)."""
    question = one_line(question, "question", "type a question about the document first")
    return (yield from answer_with_sources("ask", "question", question, documents, options, engine))


def answer_with_sources(
    task: str, field: str, request: str, documents: Sequence[Document], options: TaskOptions, engine: TextEngine
) -> Iterator[Event]:
    """Answer `request` (the template's `field`: a question, an instruction) from the whole
    documents, or from the passages that best match it when they are over the budget; the last
    event is the TaskResult with the request, the sources, the verified quotes and the numbered
    citations of the answer's sentences."""
    options.validate()
    options = options.started()
    started = time.perf_counter()
    language = output_language(documents, options)
    template = engine_template(task, language, engine)
    instruction = template.fill("instruction", **{field: request})
    # The request is the retrieval query too: its words are the best guide to the passages it needs.
    context = plan_context(task, documents, instruction, request, options, engine)
    answer = yield from stream_answer(engine, context, options, template.stop, answers_request=task == "ask")
    text = answer.text.strip()
    retrieved = context.strategy == "retrieval"
    passages = context.chunks if retrieved else related_passages(documents, f"{request} {text}", engine)
    quotes = verify_quotes(text, documents)
    yield make_result(task, text, context, documents, engine, answer.last, started, language, request=request,
                      sources=source_list(passages, documents), quotes=quotes,
                      citations=cite(text, request, passages, documents, quotes))  # fmt: skip


def one_line(request: str | None, name: str, empty_message: str) -> str:
    """The request on one line (so it cannot add a line that looks like the template's own cues),
    or InvalidRequest when it is empty or longer than MAX_QUESTION_CHARS."""
    request = " ".join((request or "").split())
    if not request:
        raise InvalidRequest(empty_message)
    if len(request) > MAX_QUESTION_CHARS:
        raise InvalidRequest(f"the {name} is too long (at most {MAX_QUESTION_CHARS:,} characters)")
    return request

"""The `ask` task: answer a question from the whole documents, or from retrieved excerpts when
they are longer than the budget; with the sources and verified quotes."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from tasks.documents import Document
from tasks.errors import InvalidRequest
from tasks.events import Event
from tasks.interfaces import TextEngine
from tasks.pipeline import TaskOptions, make_result, output_language, plan_context, stream_answer
from tasks.prompts import load_template
from tasks.sources import related_passages, source_list, verify_quotes

MAX_QUESTION_CHARS = 2000


def ask(documents: Sequence[Document], question: str, options: TaskOptions, engine: TextEngine) -> Iterator[Event]:
    """Stream an answer to `question`; the last event is the TaskResult (with sources)."""
    question = " ".join((question or "").split())
    if not question:
        raise InvalidRequest("type a question about the document first")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidRequest(f"the question is too long (at most {MAX_QUESTION_CHARS:,} characters)")
    options.validate()
    started = time.perf_counter()
    language = output_language(documents, options)
    template = load_template("ask", language)
    instruction = template.fill("instruction", question=question)
    context = plan_context("ask", documents, instruction, question, options, engine, options.max_new_tokens)
    answer = yield from stream_answer(engine, context, options, template.stop)
    text = answer.text.strip()
    retrieved = context.strategy == "retrieval"
    passages = context.chunks if retrieved else related_passages(documents, f"{question} {text}", engine)
    extra = {"question": question, "sources": source_list(passages), "quotes": verify_quotes(text, documents)}
    yield make_result("ask", text, context, documents, engine, answer.last, started, language, extra)

"""The `ask` task: answer a question about the document."""

from __future__ import annotations

from collections.abc import Iterator

from tasks.documents import Document
from tasks.errors import InvalidRequest
from tasks.events import Event
from tasks.pipeline import GenerationOptions, TextEngine, run_whole_document
from tasks.prompts import build_prompt, load_template

MAX_QUESTION_CHARS = 2000


def ask(document: Document, question: str, options: GenerationOptions, engine: TextEngine) -> Iterator[Event]:
    """Stream an answer to `question` about `document`; the last event is the TaskResult."""
    question = " ".join((question or "").split())
    if not question:
        raise InvalidRequest("type a question about the document first")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidRequest(f"the question is too long (at most {MAX_QUESTION_CHARS:,} characters)")
    prompt = build_prompt(load_template("ask"), document, question=question)
    yield from run_whole_document("ask", document, prompt, options, engine, extra={"question": question})

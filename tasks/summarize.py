"""The `summarize` task: a summary of the whole document."""

from __future__ import annotations

from collections.abc import Iterator

from tasks.documents import Document
from tasks.events import Event
from tasks.pipeline import GenerationOptions, TextEngine, run_whole_document
from tasks.prompts import build_prompt, load_template


def summarize(document: Document, options: GenerationOptions, engine: TextEngine) -> Iterator[Event]:
    """Stream a summary of `document`; the last event is the TaskResult."""
    prompt = build_prompt(load_template("summarize"), document)
    yield from run_whole_document("summarize", document, prompt, options, engine)

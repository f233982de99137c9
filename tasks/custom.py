"""The `custom` task: run the user's own instruction on the whole documents, or on the excerpts
that best match it when they are longer than the budget; with the sources and verified quotes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tasks.ask import MAX_QUESTION_CHARS, answer_with_sources, one_line
from tasks.documents import Document
from tasks.events import Event
from tasks.interfaces import TextEngine
from tasks.options import TaskOptions

MAX_PROMPT_CHARS = MAX_QUESTION_CHARS  # an instruction is a request like a question: the same limit


def custom(documents: Sequence[Document], prompt: str, options: TaskOptions, engine: TextEngine) -> Iterator[Event]:
    """Stream the response to the instruction `prompt`; the last event is the TaskResult (with sources)."""
    prompt = clean_prompt(prompt)
    return (yield from answer_with_sources("custom", "prompt", prompt, documents, options, engine))


def clean_prompt(prompt: str | None) -> str:
    """The instruction on one line, or InvalidRequest when it is empty or too long."""
    return one_line(prompt, "instruction", "type an instruction first")

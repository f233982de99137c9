"""The plain-Python front door that the UI, the CLI, the Gradio API and the tests all use.

A Workbench holds the engine (or the reason there is none) and the budget setting. It reads
files into documents, describes them against the budget, and runs tasks on them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.ask import ask
from tasks.budget import context_budget
from tasks.documents import Document, Page, load_document
from tasks.errors import ModelUnavailable
from tasks.events import Event, Progress, TaskResult
from tasks.pipeline import GenerationOptions, TextEngine, TokenCounter, document_tokens
from tasks.prompts import build_prompt, load_template
from tasks.summarize import summarize


@dataclass(frozen=True)
class DocumentCard:
    """What a person sees about a loaded document before running a task."""

    name: str
    pages: int
    characters: int
    tokens: int | None
    budget: int | None
    fits: bool | None  # None when tokens cannot be counted
    note: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Workbench:
    def __init__(
        self,
        engine: TextEngine | None = None,
        *,
        counter: TokenCounter | None = None,
        model_status: str = "",
        demo_model: bool = False,
        unavailable_reason: str | None = None,
        context_budget: int | None = None,
    ):
        self.engine = engine
        self.counter = counter or engine
        self.model_status = model_status
        self.demo_model = demo_model  # a random demo model: its text is meaningless
        self.unavailable_reason = unavailable_reason
        self.requested_budget = context_budget

    @property
    def budget(self) -> int | None:
        """The context budget in tokens, or None when no tokenizer is loaded."""
        if self.counter is None:
            return None
        return context_budget(self.counter.device, self.counter.context_limit, self.requested_budget)

    def read(self, path: str | Path, name: str | None = None) -> Document:
        return load_document(path, name)

    def card(self, document: Document, answer_tokens: int = 512) -> DocumentCard:
        """Describe `document` against the budget (token count with the model's tokenizer)."""
        budget = self.budget
        if self.counter is None or budget is None:
            reason = self.unavailable_reason or "no model is loaded"
            tokens, fits, note = None, None, f"Token count unavailable: {reason}"
        else:
            tokens = document_tokens(document, self.counter)
            fits = tokens + self._prompt_overhead() + answer_tokens <= budget
            note = _fit_note(tokens, fits, budget)
        return DocumentCard(document.name, len(document.pages), document.char_count, tokens, budget, fits, note)

    def summarize(self, path: str | Path, options: GenerationOptions, name: str | None = None) -> Iterator[Event]:
        engine = self._require_engine()
        document, read_seconds = yield from self._read_with_progress(path, name)
        yield from _with_read_time(summarize(document, self._with_budget(options), engine), read_seconds)

    def ask(
        self, path: str | Path, question: str, options: GenerationOptions, name: str | None = None
    ) -> Iterator[Event]:
        engine = self._require_engine()
        document, read_seconds = yield from self._read_with_progress(path, name)
        yield from _with_read_time(ask(document, question, self._with_budget(options), engine), read_seconds)

    def _prompt_overhead(self) -> int:
        """Tokens the longest task template adds around the document (an empty one stands in)."""
        empty = Document("document", (Page(1, ""),))
        prompts = (build_prompt(load_template(task), empty, question="") for task in ("summarize", "ask"))
        return max(self.counter.count_tokens(prompt.text) for prompt in prompts)

    def _require_engine(self) -> TextEngine:
        if self.engine is None:
            raise ModelUnavailable(f"generation is unavailable: {self.unavailable_reason or 'no model is loaded'}")
        return self.engine

    def _with_budget(self, options: GenerationOptions) -> GenerationOptions:
        if options.context_budget is None and self.requested_budget is not None:
            return dataclasses.replace(options, context_budget=self.requested_budget)
        return options

    def _read_with_progress(self, path: str | Path, name: str | None):
        yield Progress(f"Reading {name or Path(path).name}")
        started = time.perf_counter()
        document = load_document(path, name)
        return document, time.perf_counter() - started


def _with_read_time(events: Iterator[Event], read_seconds: float) -> Iterator[Event]:
    for event in events:
        if isinstance(event, TaskResult):
            timings = {"read_seconds": round(read_seconds, 3), **event.timings}
            event = dataclasses.replace(event, timings=timings)
        yield event


def _fit_note(tokens: int, fits: bool, budget: int) -> str:
    share = tokens / budget
    if fits:
        return f"{tokens:,} of {budget:,} tokens ({share:.0%} of the context budget): the whole document fits"
    return (
        f"Longer than the context budget: {tokens:,} tokens against {budget:,} ({share:.1f}x). "
        "Nothing is cut; summarize and ask need a larger context budget for this document."
    )

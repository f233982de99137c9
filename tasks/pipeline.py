"""The shared pipeline of the generating tasks: check the budget, stream, report.

Tasks reach the model only through the small `TextEngine` interface below, so they can run on
the in-process engine, a fake in tests, or (later) a remote server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tasks.budget import Fit, context_budget, require_fit
from tasks.documents import Document
from tasks.errors import InvalidRequest
from tasks.events import DocumentSummary, Event, Progress, TaskResult, TextDelta
from tasks.prompts import Prompt, render_document

MAX_NEW_TOKENS_LIMIT = 4096


class TokenCounter(Protocol):
    """Counts tokens with the model's tokenizer; knows the device and the model's context."""

    @property
    def device(self) -> str: ...

    @property
    def context_limit(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...


class TextEngine(TokenCounter, Protocol):
    """A TokenCounter that also streams generated text (chunks with .text and .finish_reason)."""

    @property
    def model_name(self) -> str: ...

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        temperature: float,
        cancel: threading.Event | None,
    ) -> Iterator[Any]: ...


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 512
    temperature: float = 0.0
    context_budget: int | None = None  # None: the device's default
    cancel: threading.Event | None = None

    def validate(self) -> None:
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise InvalidRequest(f"max new tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT:,}")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidRequest("temperature must be between 0 and 2")


def document_tokens(document: Document, counter: TokenCounter) -> int:
    """Tokens of the document as the model sees it (with its page markers)."""
    return counter.count_tokens(render_document(document))


def run_whole_document(
    task: str,
    document: Document,
    prompt: Prompt,
    options: GenerationOptions,
    engine: TextEngine,
    extra: dict[str, Any] | None = None,
) -> Iterator[Event]:
    """Give the model the whole document when it fits the budget; stream the answer."""
    options.validate()
    started = time.perf_counter()
    budget = context_budget(engine.device, engine.context_limit, options.context_budget)
    fit = Fit(engine.count_tokens(prompt.text), options.max_new_tokens, budget)
    require_fit(fit, document.name)
    yield Progress(f"Reading the whole document into the model ({fit.prompt_tokens:,} prompt tokens)")
    parts: list[str] = []
    last: Any = None
    for last in engine.stream(
        prompt.text,
        max_new_tokens=options.max_new_tokens,
        stop=prompt.stop,
        temperature=options.temperature,
        cancel=options.cancel,
    ):
        if last.text:
            parts.append(last.text)
            yield TextDelta(last.text)
    yield TaskResult(
        task=task,
        text="".join(parts).strip(),
        strategy="full",
        document=DocumentSummary(document.name, len(document.pages), document_tokens(document, engine)),
        finish_reason=last.finish_reason,
        model=engine.model_name,
        usage={"prompt_tokens": last.prompt_tokens, "generated_tokens": last.generated_tokens, "budget": budget},
        timings=_timings(last, time.perf_counter() - started),
        extra=extra or {},
    )


def _timings(last: Any, total: float) -> dict[str, float]:
    return {
        "prefill_seconds": round(last.prefill_seconds, 3),
        "decode_seconds": round(last.decode_seconds, 3),
        "decode_tokens_per_second": round(last.decode_tokens_per_second, 2),
        "total_seconds": round(total, 3),
    }

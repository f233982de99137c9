"""What every task shares: options, the output language, planning the context (whole documents or
retrieved excerpts within the budget), streaming a generation, and building the result."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tasks.budget import Fit, choose_strategy, context_budget, describe_wait, estimate_seconds, require_fit
from tasks.chunking import CHUNK_HEADER_TOKENS, DEFAULT_CHUNK_TOKENS, chunk_documents
from tasks.documents import Document
from tasks.errors import BudgetError, CapacityError, InvalidRequest, ModelUnavailable
from tasks.events import DocumentSummary, Event, Progress, TaskResult, TextDelta
from tasks.interfaces import TextEngine, TokenCounter
from tasks.language import LANGUAGES, check_language
from tasks.prompts import DEFAULT_LANGUAGE, render_chunks, render_documents
from tasks.retrieval import ScoredChunk, select

MAX_NEW_TOKENS_LIMIT = 4096
_EXCERPT_HEADER_TOKENS = 48  # room for the excerpt markers around retrieved chunks


@dataclass(frozen=True)
class TaskOptions:
    max_new_tokens: int = 512
    temperature: float = 0.0
    context_budget: int | None = None  # None: the device's default
    strategy: str = "auto"  # auto | full | map-reduce | retrieval
    language: str | None = None  # output language; None: the documents' language
    time_limit: float | None = None  # seconds of wall-clock time per request; None: no limit
    cancel: threading.Event | None = field(default=None, compare=False)
    # The session's trust boundary for cached documents (None: the command line's single user).
    cache_salt: str | None = field(default=None, compare=False, repr=False)
    deadline: float | None = field(default=None, compare=False)  # time.monotonic() to stop at; see started()

    def validate(self) -> None:
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise InvalidRequest(f"max new tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT:,}")
        if not 0.0 <= self.temperature <= 2.0:  # also refuses nan, for which every comparison is False
            raise InvalidRequest(f"temperature must be between 0 and 2, not {self.temperature!r}")
        if self.time_limit is not None and not (math.isfinite(self.time_limit) and self.time_limit > 0):
            raise InvalidRequest("the time limit must be a positive number of seconds (or none)")
        if self.language is not None:
            try:
                check_language(self.language)
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from exc

    def started(self) -> TaskOptions:
        """These options with the clock started: a task calls this as it begins, so that all its
        generations (the many of a map-reduce summary) share one deadline."""
        if self.time_limit is None or self.deadline is not None:
            return self
        return dataclasses.replace(self, deadline=time.monotonic() + self.time_limit)


@dataclass(frozen=True)
class Generated:
    text: str
    last: Any  # the engine's final chunk: finish reason, token counts, timings


@dataclass
class Context:
    """What the model will read: a cacheable prefix (whole documents) or retrieved excerpts."""

    strategy: str
    budget: int
    prefix: str = ""
    prompt: str = ""
    chunks: list[ScoredChunk] = field(default_factory=list)
    document_tokens: int = 0  # all the documents as the model reads them, counted once

    def prompt_tokens(self, counter: TokenCounter) -> int:
        """Tokens the model reads. A prefix is always the whole documents, already counted."""
        return (self.document_tokens if self.prefix else 0) + counter.count_tokens(self.prompt)


def output_language(documents: Sequence[Document], options: TaskOptions) -> str:
    """The chosen language, else the first document's detected one, else English."""
    if options.language:
        return check_language(options.language)
    detected = next((d.language for d in documents if d.language in LANGUAGES), None)
    return detected or DEFAULT_LANGUAGE


def budget_for(engine: TextEngine, options: TaskOptions) -> int:
    return context_budget(engine.device, engine.context_limit, options.context_budget, engine.memory_token_limit())


def plan_context(
    task: str,
    documents: Sequence[Document],
    instruction: str,
    query: str,
    options: TaskOptions,
    engine: TextEngine,
    answer_tokens: int,
) -> Context:
    """Whole documents when they fit (or when asked for: then they must fit), else the best
    excerpts for `query` that fit; `map-reduce` is left to the summarize task."""
    budget = budget_for(engine, options)
    prefix = render_documents(documents)
    document_tokens, instruction_tokens = engine.count_tokens(prefix), engine.count_tokens(instruction)
    fit = Fit(document_tokens + instruction_tokens, answer_tokens, budget)
    strategy = choose_strategy(task, options.strategy, fit.fits)
    if strategy == "full":
        require_fit(fit, document_names(documents))
        return Context("full", budget, prefix=prefix, prompt=instruction, document_tokens=document_tokens)
    if strategy == "map-reduce":
        return Context("map-reduce", budget, document_tokens=document_tokens)
    room = budget - answer_tokens - instruction_tokens - _EXCERPT_HEADER_TOKENS
    if room < 128:
        raise BudgetError(
            f"the context budget ({budget:,} tokens) leaves no room for excerpts of the documents next to "
            f"a {answer_tokens:,}-token answer; allow fewer new tokens or a larger budget"
        )
    chunks = chunk_documents(documents, engine, max_tokens=min(DEFAULT_CHUNK_TOKENS, room // 2))
    chosen = select(chunks, query, room, overhead=CHUNK_HEADER_TOKENS)
    chosen, prompt = fit_excerpts(chosen, instruction, budget - answer_tokens, engine)
    return Context("retrieval", budget, prompt=prompt, chunks=chosen, document_tokens=document_tokens)


def fit_excerpts(
    chosen: list[ScoredChunk], instruction: str, limit: int, counter: TokenCounter
) -> tuple[list[ScoredChunk], str]:
    """The excerpts and instruction as one prompt of at most `limit` tokens, counted exactly:
    the least relevant excerpts go first when the markers took more room than planned."""
    chosen = list(chosen)
    while chosen:
        prompt = render_chunks([scored.chunk for scored in chosen]) + instruction
        if counter.count_tokens(prompt) <= limit:
            return chosen, prompt
        chosen.remove(min(chosen, key=lambda scored: scored.score))
    raise BudgetError("no passage of the documents fits in the context budget next to the question and answer")


def stream_answer(
    engine: TextEngine,
    context: Context,
    options: TaskOptions,
    stop: Sequence[str],
    *,
    max_new_tokens: int | None = None,
    json_schema: dict | None = None,
    show_text: bool = True,
) -> Iterator[Event]:
    """Generate from `context`, yielding progress (with the expected wait) and text deltas;
    returns the whole text and the last engine chunk (`answer = yield from stream_answer(...)`)."""
    answer_tokens = max_new_tokens or options.max_new_tokens
    prompt_tokens = context.prompt_tokens(engine)
    last: Any = None
    parts: list[str] = []
    notes: set[str] = set()
    with engine_errors():  # the speed is measured by a generation when it is not known yet
        wait = describe_wait(estimate_seconds(prompt_tokens, answer_tokens, engine.throughput()))
        yield Progress(f"Reading {prompt_tokens:,} tokens ({context.strategy}); expected wait: {wait}")
        stream = engine.stream(
            context.prompt,
            prefix=context.prefix,
            max_new_tokens=answer_tokens,
            stop=stop,
            temperature=options.temperature,
            cancel=options.cancel,
            deadline=options.started().deadline,
            json_schema=json_schema,
            cache_salt=options.cache_salt,
        )
        for last in stream:
            for note in getattr(last, "notes", ()):  # an out-of-memory retry: said once, as it happens
                if note not in notes:
                    notes.add(note)
                    yield Progress(note)
            parts.append(last.text)
            if last.text and show_text:
                yield TextDelta(last.text)
    if getattr(last, "finish_reason", None) == "time_limit":
        limit = f" of {options.time_limit:g} seconds" if options.time_limit else ""
        yield Progress(f"Stopped at the time limit{limit}")
    return Generated("".join(parts), last)


@contextmanager
def engine_errors() -> Iterator[None]:
    """The engine's errors as the user's: ValueError is its word for a request it cannot serve
    (size, schema), MemoryError for one the GPU has no memory for (the engine stays usable),
    ConnectionError for a model server that cannot serve now (down, overloaded, a refused key)."""
    try:
        yield
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    except ConnectionError as exc:
        raise ModelUnavailable(str(exc)) from exc
    except MemoryError as exc:
        raise CapacityError(str(exc) or "the server ran out of memory for this request") from exc


def make_result(
    task: str,
    text: str,
    context: Context,
    documents: Sequence[Document],
    engine: TextEngine,
    last: Any,
    started: float,
    language: str,
    extra: dict[str, Any] | None = None,
) -> TaskResult:
    usage = {"budget": context.budget}
    timings = {"total_seconds": round(time.perf_counter() - started, 3)}
    if last is None:  # nothing generated (classification): the prompt's size still matters
        usage["prompt_tokens"] = context.prompt_tokens(engine)
    else:
        usage |= {"prompt_tokens": last.prompt_tokens, "generated_tokens": last.generated_tokens,
                  "cached_tokens": last.cached_tokens}  # fmt: skip
        extra = {**({"notes": list(last.notes)} if getattr(last, "notes", ()) else {}), **(extra or {})}
        timings |= {
            "prefill_seconds": round(last.prefill_seconds, 3),
            "decode_seconds": round(last.decode_seconds, 3),
            "decode_tokens_per_second": round(last.decode_tokens_per_second, 2),
        }
    pages = sorted({(c.chunk.document, p) for c in context.chunks for p in c.chunk.pages})
    return TaskResult(
        task=task,
        text=text,
        strategy=context.strategy,
        document=DocumentSummary(
            document_names(documents), sum(len(d.pages) for d in documents), context.document_tokens
        ),
        finish_reason=getattr(last, "finish_reason", None) or "stop",
        model=engine.model_name,
        usage=usage,
        timings=timings,
        extra={
            "language": language,
            "pages_used": _pages_used(context, documents, pages),
            **({"empty_pages": empty} if (empty := _empty_pages(documents)) else {}),
            **(extra or {}),
        },
    )


def _pages_used(context: Context, documents: Sequence[Document], retrieved: list[tuple[str, int]]) -> list[dict]:
    if context.strategy == "retrieval":
        by_document: dict[str, list[int]] = {}
        for name, page in retrieved:
            by_document.setdefault(name, []).append(page)
        return [{"document": name, "pages": pages} for name, pages in by_document.items()]
    return [{"document": d.name, "pages": [p.number for p in d.pages]} for d in documents]


def _empty_pages(documents: Sequence[Document]) -> dict[str, list[int]]:
    return {d.name: d.meta["empty_pages"] for d in documents if d.meta.get("empty_pages")}


def document_names(documents: Sequence[Document]) -> str:
    return ", ".join(d.name for d in documents)

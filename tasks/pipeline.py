"""What every task shares: the context its plan calls for (whole documents or retrieved excerpts
within the budget), streaming a generation, and building the result."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tasks.budget import describe_wait, estimate_seconds
from tasks.chunking import CHUNK_HEADER_TOKENS, DEFAULT_CHUNK_TOKENS, chunk_documents
from tasks.documents import Document
from tasks.endings import EndingGuard
from tasks.errors import BudgetError, CapacityError, InvalidRequest, ModelUnavailable
from tasks.events import (
    Citation,
    DocumentSummary,
    Event,
    Extraction,
    LabelScore,
    PagesUsed,
    Progress,
    Quote,
    Section,
    Source,
    TaskResult,
    TextDelta,
)
from tasks.interfaces import (
    EngineUnavailable,
    GenerationChunk,
    OutOfMemory,
    RequestRefused,
    TextEngine,
    TokenCounter,
)
from tasks.options import TaskOptions
from tasks.planning import EXCERPT_HEADER_TOKENS, Plan, document_names, plan_task, require_request_room
from tasks.prompts import chat_framing, in_chat_frame, render_chunks, render_documents
from tasks.retrieval import ScoredChunk, documents_language, select


@dataclass(frozen=True)
class Generated:
    text: str
    last: GenerationChunk | None  # the engine's final chunk: finish reason, token counts, timings


@dataclass
class Context:
    """What the model will read: a cacheable prefix (whole documents) or retrieved excerpts."""

    strategy: str
    budget: int
    prefix: str = ""
    prompt: str = ""
    chunks: list[ScoredChunk] = field(default_factory=list)
    document_tokens: int = 0  # all the documents as the model reads them, counted once
    plan: Plan | None = None  # the task's plan (None: one of a map-reduce summary's parts)

    def prompt_tokens(self, counter: TokenCounter) -> int:
        """Tokens the model reads. A prefix is always the whole documents, already counted."""
        return (self.document_tokens if self.prefix else 0) + counter.count_tokens(self.prompt)


def plan_context(
    task: str,
    documents: Sequence[Document],
    instruction: str,
    query: str,
    options: TaskOptions,
    engine: TextEngine,
    speeds: Callable[[], tuple[float, float] | None] | None = None,
) -> Context:
    """What the model reads for `task`, as `plan_task` planned it (the document card's plan):
    the whole documents as a cacheable prefix, or the excerpts that best match `query`; for
    `map-reduce`, the sections are in the plan and the summarize task reads them."""
    plan = plan_task(task, documents, options, engine, speeds=speeds)
    framing = chat_framing(engine)  # the plan counted it as part of the instruction
    require_request_room(plan, instruction + framing, engine)
    if plan.strategy == "full":
        prefix = render_documents(documents)
        return Context("full", plan.budget, prefix, instruction, document_tokens=plan.document_tokens, plan=plan)
    if plan.strategy == "map-reduce":
        return Context("map-reduce", plan.budget, document_tokens=plan.document_tokens, plan=plan)
    # The room the plan checked, and more when the request is shorter than the plan allowed for.
    limit = plan.budget - plan.answer_tokens - engine.count_tokens(framing)  # for the excerpts and instruction
    room = limit - engine.count_tokens(instruction) - EXCERPT_HEADER_TOKENS
    chunks = chunk_documents(documents, engine, max_tokens=min(DEFAULT_CHUNK_TOKENS, room // 2))
    chosen = select(chunks, query, room, overhead=CHUNK_HEADER_TOKENS, language=documents_language(documents))
    chosen, prompt = fit_excerpts(chosen, instruction, limit, engine)
    return Context(
        "retrieval", plan.budget, prompt=prompt, chunks=chosen, document_tokens=plan.document_tokens, plan=plan
    )


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
    answers_request: bool = False,
) -> Iterator[Event]:
    """Generate from `context`, yielding progress (with the expected wait) and text deltas;
    returns the whole text and the last engine chunk (`answer = yield from stream_answer(...)`).

    Text (not JSON) ends where the answer ends (tasks/endings.py): before an invented question
    block (`answers_request`: before any later line that asks a question too) or a loop, which
    finishes as "repetition". An empty answer is asked for once more, sampled; when it stays
    empty it finishes as "empty", never as a success."""
    answer = yield from _generate(engine, context, options, stop, max_new_tokens, json_schema, show_text,
                                  answers_request, options.temperature)  # fmt: skip
    if json_schema is not None or answer.text.strip() or answer.last is None:
        return answer
    if answer.last.finish_reason not in ("stop", "length"):
        return answer
    yield Progress(RETRY_NOTE)
    retry = yield from _generate(engine, context, options, stop, max_new_tokens, None, show_text, answers_request,
                                 max(options.temperature, RETRY_TEMPERATURE))  # fmt: skip
    if retry.text.strip() or retry.last is None:
        return retry
    return Generated("", dataclasses.replace(retry.last, finish_reason="empty"))


RETRY_NOTE = "The model gave an empty answer; asking once more"
RETRY_TEMPERATURE = 0.7  # greedy decoding would give the same empty answer again


def _generate(engine, context, options, stop, max_new_tokens, json_schema, show_text, answers_request, temperature):
    answer_tokens = max_new_tokens or options.max_new_tokens
    prompt_tokens = context.prompt_tokens(engine)
    last: GenerationChunk | None = None
    parts: list[str] = []
    notes: set[str] = set()
    guard = EndingGuard(questions=answers_request) if json_schema is None else None
    shown = 0  # the guarded text's characters streamed so far
    halt = Halt(options.cancel)
    with engine_errors():  # the speed is measured by a generation when it is not known yet
        seconds = estimate_seconds(prompt_tokens, answer_tokens, engine.throughput())
        message = f"Reading {prompt_tokens:,} tokens ({context.strategy}); expected wait: {describe_wait(seconds)}"
        yield Progress(message, expected_seconds=seconds)
        prefix, prompt = in_chat_frame(engine.chat_frame, context.prefix, context.prompt)
        stream = engine.stream(
            prompt,
            prefix=prefix,
            max_new_tokens=answer_tokens,
            stop=stop,
            temperature=temperature,
            cancel=halt,
            deadline=options.started().deadline,
            json_schema=json_schema,
            cache_salt=options.cache_salt,
        )
        for last in stream:
            for note in last.notes:  # an out-of-memory retry: said once, as it happens
                if note not in notes:
                    notes.add(note)
                    yield Progress(note)
            parts.append(last.text)
            if halt.ended:  # the answer is over; the engine stops at its next token
                continue
            if guard is None:
                if last.text and show_text:
                    yield TextDelta(last.text)
                continue
            if guard.push(last.text):
                halt.end()
            if show_text and (settled := guard.settled()) > shown:  # what may still be cut waits
                yield TextDelta(guard.text[shown:settled])
                shown = settled
    if last is not None and last.finish_reason == "time_limit":
        limit = f" of {options.time_limit:g} seconds" if options.time_limit else ""
        yield Progress(f"Stopped at the time limit{limit}")
    if guard is None or last is None:
        return Generated("".join(parts), last)
    text = guard.finish()
    if show_text and len(text) > shown:
        yield TextDelta(text[shown:])
    if guard.reason == "repetition":
        yield Progress(REPETITION_NOTE)
        last = dataclasses.replace(last, finish_reason="repetition")
    elif guard.reason is not None and last.finish_reason == "cancelled" and not halt.cancelled_by_user:
        last = dataclasses.replace(last, finish_reason="stop")
    return Generated(text, last)


REPETITION_NOTE = "Stopped: the model began repeating itself"


class Halt(threading.Event):
    """The cancel event one generation runs with: set when the user cancels (their event) or when
    the answer is over (`end`), so the engine stops at its next token either way."""

    def __init__(self, user: threading.Event | None):
        super().__init__()
        self._user = user

    def end(self) -> None:
        self.set()

    @property
    def ended(self) -> bool:
        return super().is_set()

    @property
    def cancelled_by_user(self) -> bool:
        return self._user is not None and self._user.is_set()

    def is_set(self) -> bool:
        return super().is_set() or self.cancelled_by_user


@contextmanager
def engine_errors() -> Iterator[None]:
    """The engine's errors (tasks/interfaces.py) as the user's; any other exception is a bug and
    stays one, a ValueError included."""
    try:
        yield
    except RequestRefused as exc:
        raise InvalidRequest(str(exc)) from exc
    except EngineUnavailable as exc:
        raise ModelUnavailable(str(exc)) from exc
    except OutOfMemory as exc:
        raise CapacityError(str(exc) or "the server ran out of memory for this request") from exc


def make_result(
    task: str,
    text: str,
    context: Context,
    documents: Sequence[Document],
    engine: TextEngine,
    last: GenerationChunk | None,
    started: float,
    language: str,
    *,
    request: str | None = None,
    sources: list[Source] | None = None,
    quotes: list[Quote] | None = None,
    citations: list[Citation] | None = None,
    sections: list[Section] | None = None,
    labels: list[LabelScore] | None = None,
    extraction: Extraction | None = None,
) -> TaskResult:
    """The TaskResult of a generation that ended with `last` (None: nothing was generated)."""
    usage = {"budget": context.budget}
    timings = {"total_seconds": round(time.perf_counter() - started, 3)}
    if last is None:  # nothing generated (classification): the prompt's size still matters
        usage["prompt_tokens"] = context.prompt_tokens(engine)
    else:
        usage |= {"prompt_tokens": last.prompt_tokens, "generated_tokens": last.generated_tokens,
                  "cached_tokens": last.cached_tokens}  # fmt: skip
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
        finish_reason=(last.finish_reason if last else None) or "stop",
        model=engine.model_name,
        usage=usage,
        timings=timings,
        language=language,
        pages_used=_pages_used(context, documents, pages),
        empty_pages=_empty_pages(documents),
        notes=last.notes if last else (),
        request=request,
        sources=sources,
        quotes=quotes,
        citations=citations,
        sections=sections,
        labels=labels,
        extraction=extraction,
    )


def _pages_used(context: Context, documents: Sequence[Document], retrieved: list[tuple[str, int]]) -> list[PagesUsed]:
    if context.strategy == "retrieval":
        by_document: dict[str, list[int]] = {}
        for name, page in retrieved:
            by_document.setdefault(name, []).append(page)
        return [{"document": name, "pages": pages} for name, pages in by_document.items()]
    return [{"document": d.name, "pages": [p.number for p in d.pages]} for d in documents]


def _empty_pages(documents: Sequence[Document]) -> dict[str, list[int]]:
    return {d.name: d.meta["empty_pages"] for d in documents if d.meta.get("empty_pages")}

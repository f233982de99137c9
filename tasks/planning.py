"""Planning a task on documents: the budget, the strategy, what the model will read and write,
and for a map-reduce summary the sections it reads one by one.

The document card and the tasks call the same `plan_task`, so what the card says a task will do
is what the task then does. A plan cannot depend on the request (the card is drawn before a
question is typed), so every task with a request keeps REQUEST_TOKENS of room for it, and a
longer request is refused; follow-up questions on a document then all use the same strategy
(and the same cached prefix).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from string import Formatter

from tasks.budget import (
    Fit,
    Strategy,
    choose_strategy,
    context_budget,
    estimate_seconds,
    require_fit,
    require_time,
)
from tasks.chunking import CHUNK_HEADER_TOKENS, DEFAULT_CHUNK_TOKENS, Chunk, chunk_documents
from tasks.documents import Document
from tasks.errors import BudgetError, InvalidRequest
from tasks.interfaces import TextEngine, TokenCounter
from tasks.language import LANGUAGES, check_language
from tasks.options import TaskOptions
from tasks.prompts import DEFAULT_LANGUAGE, Template, chat_framing, engine_template, render_chunks, render_documents

# The room each plan keeps for the request (a longer one is refused): an eighth of the budget,
# at most REQUEST_TOKENS, so that small budgets keep most of their room for the documents.
REQUEST_TOKENS = 512
REQUEST_SHARE = 8
MIN_EXCERPT_TOKENS = 128  # retrieval needs room for at least this much of the documents
EXCERPT_HEADER_TOKENS = 48  # the excerpt markers around retrieved chunks
# What the request of each task is called in messages; a task not listed takes no request.
REQUEST_NAMES = {"ask": "question", "custom": "instruction", "extract": "list of fields",
                 "classify": "list of labels"}  # fmt: skip
LABEL_TOKENS = 32  # the longest label classification scores: its "answer"
MAP_ANSWER_TOKENS = 384  # each partial summary; enough for the names and numbers of a section
MAP_MARGIN = 64  # markers and template text around a section or a merge
MIN_MAP_TOKENS = 32  # a partial summary shorter than this says too little to merge


@dataclass(frozen=True)
class Plan:
    """What a task will do with documents under the current options."""

    task: str
    strategy: Strategy
    budget: int
    language: str
    document_tokens: int  # all the documents as the model reads them
    instruction_tokens: int  # the task's instruction without the request
    request_tokens: int  # the room kept for the request (0: the task takes none)
    answer_tokens: int
    map_tokens: int = 0  # map-reduce: the length of each partial summary
    sections: tuple[tuple[Chunk, ...], ...] = ()  # map-reduce: the parts, read one by one

    @property
    def excerpt_room(self) -> int:
        """Retrieval: the tokens left for excerpts by the longest request the plan allows."""
        used = self.answer_tokens + self.instruction_tokens + self.request_tokens + EXCERPT_HEADER_TOKENS
        return self.budget - used

    @property
    def parts(self) -> int:
        """The task's generations, not counting merges: one per map-reduce section, else one."""
        return len(self.sections) or 1

    def work(self) -> tuple[int, int]:
        """(tokens read, tokens written), about: what the expected wait is computed from."""
        if self.strategy == "map-reduce":  # every section once, then the merge reads each partial summary
            partials = len(self.sections) * self.map_tokens
            return self.document_tokens + partials, partials + self.answer_tokens
        if self.strategy == "full":
            return self.document_tokens + self.instruction_tokens + self.request_tokens, self.answer_tokens
        return self.budget - self.answer_tokens, self.answer_tokens  # retrieval fills the prompt's room

    def expected_seconds(self, speeds: tuple[float, float]) -> float:
        return estimate_seconds(*self.work(), speeds)

    def require_time(self, what: str, speeds: tuple[float, float], time_limit: float | None) -> None:
        """Refuse (TooLongToRun), with the numbers, a plan that would run longer than a request may;
        before its sections are known, with the least it reads and writes."""
        at_least = self.strategy == "map-reduce" and not self.sections
        require_time(what, *self.work(), speeds, time_limit, at_least=at_least)


def output_language(documents: Sequence[Document], options: TaskOptions) -> str:
    """The chosen language, else the first document's detected one, else English."""
    if options.language:
        return check_language(options.language)
    detected = next((d.language for d in documents if d.language in LANGUAGES), None)
    return detected or DEFAULT_LANGUAGE


def budget_for(engine: TextEngine, options: TaskOptions) -> int:
    return context_budget(engine.on_cpu, engine.context_limit, options.context_budget, engine.memory_token_limit())


def plan_task(
    task: str,
    documents: Sequence[Document],
    options: TaskOptions,
    engine: TextEngine,
    *,
    document_tokens: int | None = None,
    speeds: Callable[[], tuple[float, float] | None] | None = None,
) -> Plan:
    """The plan of `task` on `documents`: the whole documents when they fit (with the request's
    room and the answer), else the task's long-document strategy; an explicit strategy is checked
    (`full` must fit). Raises the user's errors (BudgetError, InvalidRequest) for a plan that
    cannot run. `document_tokens`: the documents' count, when the caller has it already.
    `speeds`: the engine's measured speeds (None: unknown), asked for only by a map-reduce plan,
    which is refused (TooLongToRun) before the work of cutting its sections when even reading
    every token once would take longer than the time limit allows."""
    language = output_language(documents, options)
    template = engine_template(task, language, engine)
    budget = budget_for(engine, options)
    if document_tokens is None:
        document_tokens = engine.count_tokens(render_documents(documents))
    # An instruct model's chat template takes room around the instruction too.
    framing = chat_framing(engine)
    instruction_tokens = engine.count_tokens(instruction_without_request(template) + framing)
    request_tokens = min(REQUEST_TOKENS, budget // REQUEST_SHARE) if task in REQUEST_NAMES else 0
    answer_tokens = LABEL_TOKENS if task == "classify" else options.max_new_tokens
    fit = Fit(document_tokens + instruction_tokens, answer_tokens, budget, request_tokens)
    strategy = choose_strategy(task, options.strategy, fit.fits)
    if strategy == "full":
        require_fit(fit, document_names(documents))
    plan = Plan(task, strategy, budget, language, document_tokens, instruction_tokens, request_tokens, answer_tokens)
    if strategy == "retrieval" and plan.excerpt_room < MIN_EXCERPT_TOKENS:
        raise BudgetError(
            f"the context budget ({budget:,} tokens) leaves no room for excerpts of the documents next to "
            f"a {answer_tokens:,}-token answer; allow fewer new tokens or a larger budget"
        )
    if strategy != "map-reduce":
        return plan
    if speeds is not None and (measured := speeds()) is not None:
        plan.require_time(f"A summary of {document_names(documents)}", measured, options.time_limit)
    map_tokens, sections = split_sections(documents, template, budget, engine, answer_tokens)
    return dataclasses.replace(plan, map_tokens=map_tokens, sections=sections)


def require_request_room(plan: Plan, instruction: str, counter: TokenCounter) -> None:
    """Refuse a request longer than the room its plan keeps for it."""
    used = counter.count_tokens(instruction) - plan.instruction_tokens
    if used > plan.request_tokens:
        name = REQUEST_NAMES.get(plan.task, "request")
        raise InvalidRequest(f"the {name} is too long: {used:,} tokens, at most {plan.request_tokens:,}")


def instruction_without_request(template: Template) -> str:
    """The task's instruction with every field of the request left empty."""
    text = template.parts["instruction"]
    return template.fill("instruction", **{name: "" for _, name, _, _ in Formatter().parse(text) if name})


def split_sections(
    documents: Sequence[Document],
    template: Template,
    budget: int,
    engine: TextEngine,
    answer_tokens: int = MAP_ANSWER_TOKENS,
) -> tuple[int, tuple[tuple[Chunk, ...], ...]]:
    """(the length of each partial summary, the sections): consecutive chunks of one document
    whose map prompt, counted exactly, fits the budget next to its partial summary. A partial
    summary is no longer than the summary asked for (`answer_tokens`, the new tokens allowed)."""
    framing = chat_framing(engine)  # an instruct model's chat template, around every prompt
    merge = template.fill("reduce_intro", name="x") + template.fill("reduce_instruction")
    overhead = engine.count_tokens(merge + framing)
    # A third of the budget at most, so that two partial summaries and their merge always fit:
    # every merge level then at least halves their number, and the reduction ends.
    map_tokens = min(MAP_ANSWER_TOKENS, max(MIN_MAP_TOKENS, answer_tokens), (budget - overhead - MAP_MARGIN) // 3)
    instruction = engine.count_tokens(template.fill("map_instruction", pages="000-000") + framing)
    room = budget - map_tokens - instruction - MAP_MARGIN
    if room < 256 or map_tokens < MIN_MAP_TOKENS:
        raise BudgetError(f"the context budget ({budget:,} tokens) is too small to summarize this document in parts")
    chunks = chunk_documents(documents, engine, max_tokens=min(DEFAULT_CHUNK_TOKENS, room // 2))
    pending = _packed(chunks, room)
    sections: list[tuple[Chunk, ...]] = []
    while pending:
        section = pending.pop(0)
        if engine.count_tokens(map_prompt(section, template) + framing) + map_tokens > budget and len(section) > 1:
            middle = len(section) // 2  # the markers took more room than planned: halve the section
            pending[:0] = [section[:middle], section[middle:]]
            continue
        sections.append(section)
    return map_tokens, tuple(sections)


def map_prompt(section: Sequence[Chunk], template: Template) -> str:
    return render_chunks(section) + template.fill("map_instruction", pages=page_range(section))


def page_range(section: Sequence[Chunk]) -> str:
    pages = [p for chunk in section for p in chunk.pages]
    return f"{min(pages)}-{max(pages)}" if min(pages) != max(pages) else str(pages[0])


def _packed(chunks: Sequence[Chunk], room: int) -> list[tuple[Chunk, ...]]:
    """Consecutive chunks of one document, packed up to `room` tokens (with their markers)."""
    sections: list[list[Chunk]] = []
    used = 0
    for chunk in chunks:
        cost = chunk.tokens + CHUNK_HEADER_TOKENS
        if not sections or sections[-1][-1].document != chunk.document or used + cost > room:
            sections.append([])
            used = 0
        sections[-1].append(chunk)
        used += cost
    return [tuple(section) for section in sections]


def document_names(documents: Sequence[Document]) -> str:
    return ", ".join(d.name for d in documents)

"""Map-reduce summaries of documents longer than the budget.

Map: the documents are cut into page-aware sections that fit the budget, and each is summarized
with every name and number kept. Reduce: the partial summaries are merged into one (streamed to
the user); when they do not fit together, they are merged in groups first, level by level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tasks.chunking import CHUNK_HEADER_TOKENS, DEFAULT_CHUNK_TOKENS, Chunk, chunk_documents
from tasks.documents import Document
from tasks.errors import BudgetError
from tasks.events import Event, Progress
from tasks.interfaces import TextEngine
from tasks.pipeline import Context, Generated, TaskOptions, stream_answer
from tasks.prompts import Template, render_chunks

MAP_ANSWER_TOKENS = 384  # each partial summary; enough for the names and numbers of a section
_MARGIN = 64  # markers and template text around a section
_SECTION_OVERHEAD = 256  # the map instruction and the markers of a section, in the time estimate
STOPPED = ("cancelled", "time_limit")  # the user's stop or the request's deadline: no later part is read


@dataclass(frozen=True)
class Partial:
    label: str
    document: str
    pages: tuple[int, ...]
    text: str


def expected_work(tokens: int, budget: int, answer_tokens: int) -> tuple[int, int]:
    """(tokens read, tokens written) by a map-reduce summary of `tokens` document tokens, about:
    every token is read once and each section gets a partial summary, then the merge answers."""
    sections = -(-tokens // max(1, budget - MAP_ANSWER_TOKENS - _SECTION_OVERHEAD))
    return tokens, sections * MAP_ANSWER_TOKENS + answer_tokens


def map_reduce(
    documents: Sequence[Document], template: Template, budget: int, options: TaskOptions, engine: TextEngine
) -> Iterator[Event]:
    """Summarize section by section, then merge; returns (Generated, sections as JSON)."""
    overhead = engine.count_tokens(template.fill("reduce_intro", name="x") + template.fill("reduce_instruction"))
    # A third of the budget at most, so that two partial summaries and their merge always fit:
    # every merge level then at least halves their number, and the reduction ends.
    map_tokens = min(MAP_ANSWER_TOKENS, (budget - overhead - _MARGIN) // 3)
    room = budget - map_tokens - engine.count_tokens(template.fill("map_instruction", pages="000-000")) - _MARGIN
    if room < 256 or map_tokens < 32:
        raise BudgetError(f"the context budget ({budget:,} tokens) is too small to summarize this document in parts")
    chunks = chunk_documents(documents, engine, max_tokens=min(DEFAULT_CHUNK_TOKENS, room // 2))
    pending = _sections(chunks, room)
    partials: list[Partial] = []
    while pending:
        section = pending.pop(0)
        pages = _page_range(section)
        prompt = render_chunks(section) + template.fill("map_instruction", pages=pages)
        if engine.count_tokens(prompt) + map_tokens > budget and len(section) > 1:
            middle = len(section) // 2  # the markers took more room than planned: halve the section
            pending[:0] = [section[:middle], section[middle:]]
            continue
        number = len(partials) + 1
        total = number + len(pending)
        yield Progress(f"Summarizing part {number} of {total} ({section[0].document}, pages {pages})", number, total)
        context = Context("map-reduce", budget, prompt=prompt)
        answer = yield from stream_answer(engine, context, options, template.stop, max_new_tokens=map_tokens,
                                          show_text=False)  # fmt: skip
        if answer.last.finish_reason in STOPPED:
            return Generated("", answer.last), _as_json(partials)
        label = template.fill("part_label", number=number, pages=pages)
        pages_covered = tuple(p for c in section for p in c.pages)
        partials.append(Partial(label, section[0].document, pages_covered, answer.text.strip()))
    names = ", ".join(d.name for d in documents)
    final = yield from _reduce(partials, template, budget, map_tokens, options, engine, names)
    return final, _as_json(partials)


def _reduce(partials, template, budget, map_tokens, options, engine, name) -> Iterator[Event]:
    """Merge until one prompt holds every partial summary; that last merge streams to the user
    (its answer may be shorter than asked for when the budget leaves less room)."""
    level = 1
    overhead = engine.count_tokens(_reduce_prompt([], template, name)) + _MARGIN
    limit = (budget - map_tokens - overhead) // 2  # two partials per merge at least: every level halves them
    while True:
        partials, shortened = _fit_partials(partials, limit, engine)
        if shortened:
            yield Progress(f"{shortened} partial summaries were longer than planned and were shortened to fit")
        prompt = _reduce_prompt(partials, template, name)
        room = budget - engine.count_tokens(prompt)
        if room >= min(options.max_new_tokens, map_tokens):
            yield Progress(f"Merging {len(partials)} partial summaries")
            context = Context("map-reduce", budget, prompt=prompt)
            answer_tokens = min(options.max_new_tokens, room)
            if answer_tokens < options.max_new_tokens:
                yield Progress(f"The budget leaves room for a summary of {answer_tokens:,} tokens at most")
            return (yield from stream_answer(engine, context, options, template.stop, max_new_tokens=answer_tokens))
        groups = _groups(partials, template, name, budget - map_tokens, engine)
        merged: list[Partial] = []
        for number, group in enumerate(groups, start=1):
            message = f"Merging partial summaries, level {level}: group {number} of {len(groups)}"
            yield Progress(message, number, len(groups))
            context = Context("map-reduce", budget, prompt=_reduce_prompt(group, template, name))
            answer: Generated = yield from stream_answer(engine, context, options, template.stop,
                                                         max_new_tokens=map_tokens, show_text=False)  # fmt: skip
            if answer.last.finish_reason in STOPPED:
                return Generated("", answer.last)
            pages = tuple(p for partial in group for p in partial.pages)
            label = template.fill("part_label", number=number, pages=f"{min(pages)}-{max(pages)}")
            merged.append(Partial(label, group[0].document, pages, answer.text.strip()))
        partials, level = merged, level + 1


def _fit_partials(partials: list[Partial], limit: int, engine: TextEngine) -> tuple[list[Partial], int]:
    """Partials whose text is at most `limit` tokens. Generated text can take more tokens when it
    is encoded again than it took to generate (broken characters, above all), so this is checked."""
    fitted, shortened = [], 0
    for partial in partials:
        text = partial.text
        while (tokens := engine.count_tokens(text)) > limit:
            text = text[: max(1, int(len(text) * limit / tokens * 0.95))]
        shortened += text != partial.text
        fitted.append(Partial(partial.label, partial.document, partial.pages, text))
    return fitted, shortened


def _reduce_prompt(partials: Sequence[Partial], template: Template, name: str) -> str:
    body = "\n\n".join(f"{p.label}:\n{p.text}" for p in partials)
    return template.fill("reduce_intro", name=name) + body + template.fill("reduce_instruction")


def _groups(partials, template, name, room, engine) -> list[list[Partial]]:
    groups: list[list[Partial]] = [[]]
    for partial in partials:
        if groups[-1] and engine.count_tokens(_reduce_prompt([*groups[-1], partial], template, name)) > room:
            groups.append([])
        groups[-1].append(partial)
    return groups


def _sections(chunks: Sequence[Chunk], room: int) -> list[list[Chunk]]:
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
    return sections


def _page_range(section: Sequence[Chunk]) -> str:
    pages = [p for chunk in section for p in chunk.pages]
    return f"{min(pages)}-{max(pages)}" if min(pages) != max(pages) else str(pages[0])


def _as_json(partials: Sequence[Partial]) -> list[dict]:
    return [{"document": p.document, "pages": sorted(set(p.pages)), "summary": p.text} for p in partials]

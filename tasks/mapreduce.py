"""Map-reduce summaries of documents longer than the budget.

Map: the documents are cut into page-aware sections that fit the budget, and each is summarized
with every name and number kept. Reduce: the partial summaries are merged into one (streamed to
the user); when they do not fit together, they are merged in groups first, level by level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tasks.chunking import Chunk, chunk_documents
from tasks.documents import Document
from tasks.errors import BudgetError
from tasks.events import Event, Progress
from tasks.interfaces import TextEngine
from tasks.pipeline import Context, Generated, TaskOptions, stream_answer
from tasks.prompts import Template, render_chunks

MAP_ANSWER_TOKENS = 384  # each partial summary; enough for the names and numbers of a section
_MARGIN = 64  # markers and template text around a section


@dataclass(frozen=True)
class Partial:
    label: str
    document: str
    pages: tuple[int, ...]
    text: str


def map_reduce(
    documents: Sequence[Document], template: Template, budget: int, options: TaskOptions, engine: TextEngine
) -> Iterator[Event]:
    """Summarize section by section, then merge; returns (Generated, sections as JSON)."""
    map_tokens = min(options.max_new_tokens, MAP_ANSWER_TOKENS)
    room = budget - map_tokens - engine.count_tokens(template.fill("map_instruction", pages="000-000")) - _MARGIN
    if room < 256:
        raise BudgetError(f"the context budget ({budget:,} tokens) is too small to summarize this document in parts")
    sections = _sections(chunk_documents(documents, engine, max_tokens=min(384, room)), room)
    partials: list[Partial] = []
    for number, section in enumerate(sections, start=1):
        pages = _page_range(section)
        yield Progress(f"Summarizing part {number} of {len(sections)} ({section[0].document}, pages {pages})")
        context = Context(
            "map-reduce", budget, prompt=render_chunks(section) + template.fill("map_instruction", pages=pages)
        )
        answer = yield from stream_answer(engine, context, options, template.stop, max_new_tokens=map_tokens,
                                          show_text=False)  # fmt: skip
        if answer.last.finish_reason == "cancelled":
            return answer, _as_json(partials)
        label = template.fill("part_label", number=number, pages=pages)
        partials.append(
            Partial(label, section[0].document, tuple(p for c in section for p in c.pages), answer.text.strip())
        )
    final = yield from _reduce(partials, template, budget, options, engine, ", ".join(d.name for d in documents))
    return final, _as_json(partials)


def _reduce(partials, template, budget, options, engine, name) -> Iterator[Event]:
    level = 1
    while True:
        prompt = _reduce_prompt(partials, template, name)
        if engine.count_tokens(prompt) + options.max_new_tokens <= budget:
            yield Progress(f"Merging {len(partials)} partial summaries")
            return (
                yield from stream_answer(engine, Context("map-reduce", budget, prompt=prompt), options, template.stop)
            )
        groups = _groups(partials, template, name, budget - MAP_ANSWER_TOKENS, engine)
        if len(groups) == len(partials):
            raise BudgetError("the partial summaries are too long to merge within the context budget")
        merged: list[Partial] = []
        for number, group in enumerate(groups, start=1):
            yield Progress(f"Merging partial summaries, level {level}: group {number} of {len(groups)}")
            context = Context("map-reduce", budget, prompt=_reduce_prompt(group, template, name))
            answer: Generated = yield from stream_answer(engine, context, options, template.stop,
                                                         max_new_tokens=MAP_ANSWER_TOKENS, show_text=False)  # fmt: skip
            if answer.last.finish_reason == "cancelled":
                return answer
            pages = tuple(p for partial in group for p in partial.pages)
            label = template.fill("part_label", number=number, pages=f"{min(pages)}-{max(pages)}")
            merged.append(Partial(label, group[0].document, pages, answer.text.strip()))
        partials, level = merged, level + 1


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
    """Consecutive chunks of one document, packed up to `room` tokens."""
    sections: list[list[Chunk]] = []
    used = 0
    for chunk in chunks:
        fresh = not sections or sections[-1][-1].document != chunk.document or used + chunk.tokens > room
        if fresh:
            sections.append([])
            used = 0
        sections[-1].append(chunk)
        used += chunk.tokens
    return sections


def _page_range(section: Sequence[Chunk]) -> str:
    pages = [p for chunk in section for p in chunk.pages]
    return f"{min(pages)}-{max(pages)}" if min(pages) != max(pages) else str(pages[0])


def _as_json(partials: Sequence[Partial]) -> list[dict]:
    return [{"document": p.document, "pages": sorted(set(p.pages)), "summary": p.text} for p in partials]

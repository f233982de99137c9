"""Map-reduce summaries of documents longer than the budget.

Map: the plan's page-aware sections (cut to fit the budget by `tasks.planning`, which the
document card calls too) are each summarized with every name and number kept. Reduce: the
partial summaries are merged into one (streamed to the user); when they do not fit together,
they are merged in groups first, level by level.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tasks.events import Event, PartDone, Progress, Section
from tasks.interfaces import GenerationChunk, TextEngine
from tasks.options import TaskOptions
from tasks.pipeline import Context, Generated, engine_errors, stream_answer
from tasks.planning import MAP_MARGIN, Plan, map_prompt, page_range
from tasks.prompts import Template, chat_framing

STOPPED = ("cancelled", "time_limit")  # the user's stop or the request's deadline: no later part is read


@dataclass(frozen=True)
class Partial:
    label: str
    document: str
    pages: tuple[int, ...]
    text: str


def map_reduce(plan: Plan, template: Template, options: TaskOptions, engine: TextEngine, name: str) -> Iterator[Event]:
    """Summarize the plan's sections one by one (each summary is yielded as a PartDone as soon as
    it is finished), then merge; returns (Generated, sections as JSON). The first part's Progress
    carries the whole plan's expected seconds, so a progress bar can show the time left."""
    partials: list[Partial] = []
    calls: list[GenerationChunk] = []  # every generation's last chunk: the usage is theirs together
    total = len(plan.sections)
    with engine_errors():  # measured already (the plan's time was checked with it): not measured again
        expected = plan.expected_seconds(engine.throughput())
    for number, section in enumerate(plan.sections, start=1):
        pages = page_range(section)
        where = f"pages {pages}" if "-" in pages else f"page {pages}"
        message = f"Summarizing part {number} of {total} ({section[0].document}, {where})"
        yield Progress(message, number, total, expected_seconds=expected if number == 1 else None)
        context = Context("map-reduce", plan.budget, prompt=map_prompt(section, template))
        answer = yield from stream_answer(engine, context, options, template.stop, max_new_tokens=plan.map_tokens,
                                          show_text=False)  # fmt: skip
        calls.append(answer.last)
        if answer.last.finish_reason in STOPPED:
            return Generated("", all_calls(calls)), _as_json(partials)
        label = template.fill("part_label", number=number, pages=pages)
        pages_covered = tuple(p for c in section for p in c.pages)
        partials.append(Partial(label, section[0].document, pages_covered, answer.text.strip()))
        yield PartDone(number, total, section[0].document, tuple(sorted(set(pages_covered))), partials[-1].text)
    final = yield from _reduce(partials, template, plan.budget, plan.map_tokens, options, engine, name, calls)
    return Generated(final.text, all_calls(calls)), _as_json(partials)


def all_calls(calls: Sequence[GenerationChunk]) -> GenerationChunk:
    """The last call's chunk (its finish reason) with the tokens and seconds of every call summed:
    a map-reduce summary's usage is everything it read and wrote, not only its final merge."""
    last = calls[-1]
    return dataclasses.replace(
        last,
        prompt_tokens=sum(call.prompt_tokens for call in calls),
        generated_tokens=sum(call.generated_tokens for call in calls),
        cached_tokens=sum(call.cached_tokens for call in calls),
        prefill_seconds=sum(call.prefill_seconds for call in calls),
        decode_seconds=sum(call.decode_seconds for call in calls),
        notes=tuple(dict.fromkeys(note for call in calls for note in call.notes)),
    )


def _reduce(partials, template, budget, map_tokens, options, engine, name, calls) -> Iterator[Event]:
    """Merge until one prompt holds every partial summary; that last merge streams to the user
    (its answer may be shorter than asked for when the budget leaves less room). Every merge's
    last chunk goes into `calls`."""
    level = 1
    framing = chat_framing(engine)  # an instruct model's chat template, around every prompt
    overhead = engine.count_tokens(_reduce_prompt([], template, name) + framing) + MAP_MARGIN
    limit = (budget - map_tokens - overhead) // 2  # two partials per merge at least: every level halves them
    while True:
        partials, shortened = _fit_partials(partials, limit, engine)
        if shortened:
            yield Progress(f"{shortened} partial summaries were longer than planned and were shortened to fit")
        prompt = _reduce_prompt(partials, template, name)
        room = budget - engine.count_tokens(prompt + framing)
        if room >= min(options.max_new_tokens, map_tokens):
            yield Progress(f"Merging {len(partials)} partial summaries")
            context = Context("map-reduce", budget, prompt=prompt)
            answer_tokens = min(options.max_new_tokens, room)
            if answer_tokens < options.max_new_tokens:
                yield Progress(f"The budget leaves room for a summary of {answer_tokens:,} tokens at most")
            final = yield from stream_answer(engine, context, options, template.stop, max_new_tokens=answer_tokens)
            calls.append(final.last)
            return final
        groups = _groups(partials, template, name, budget - map_tokens - engine.count_tokens(framing), engine)
        merged: list[Partial] = []
        for number, group in enumerate(groups, start=1):
            message = f"Merging partial summaries, level {level}: group {number} of {len(groups)}"
            yield Progress(message, number, len(groups))
            context = Context("map-reduce", budget, prompt=_reduce_prompt(group, template, name))
            answer: Generated = yield from stream_answer(engine, context, options, template.stop,
                                                         max_new_tokens=map_tokens, show_text=False)  # fmt: skip
            calls.append(answer.last)
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


def _as_json(partials: Sequence[Partial]) -> list[Section]:
    return [{"document": p.document, "pages": sorted(set(p.pages)), "summary": p.text} for p in partials]

"""The `summarize` task: the whole document when it fits the budget, else map-reduce."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from tasks.documents import Document
from tasks.events import Event
from tasks.interfaces import TextEngine
from tasks.mapreduce import map_reduce
from tasks.options import TaskOptions
from tasks.pipeline import engine_errors, make_result, plan_context, stream_answer
from tasks.planning import document_names, output_language
from tasks.prompts import engine_template


def summarize(documents: Sequence[Document], options: TaskOptions, engine: TextEngine) -> Iterator[Event]:
    """Stream a summary of `documents`; the last event is the TaskResult."""
    options.validate()
    options = options.started()  # one deadline for every generation of a map-reduce summary
    started = time.perf_counter()
    language = output_language(documents, options)
    template = engine_template("summarize", language, engine)
    context = plan_context(
        "summarize", documents, template.fill("instruction"), "", options, engine, lambda: measured_speeds(engine)
    )
    if context.strategy == "full":
        answer = yield from stream_answer(engine, context, options, template.stop)
        sections = None
    else:
        names = document_names(documents)
        context.plan.require_time(f"A summary of {names}", measured_speeds(engine), options.time_limit)
        answer, sections = yield from map_reduce(context.plan, template, options, engine, names)
    text = answer.text.strip()
    yield make_result("summarize", text, context, documents, engine, answer.last, started, language, sections=sections)


def measured_speeds(engine: TextEngine) -> tuple[float, float]:
    """The engine's speeds; measured by a generation when they are not known yet (a map-reduce
    summary is refused up front when it would take longer than a request may run)."""
    with engine_errors():
        return engine.throughput()

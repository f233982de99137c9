"""The `summarize` task: the whole document when it fits the budget, else map-reduce."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from tasks.budget import require_time
from tasks.documents import Document
from tasks.events import Event
from tasks.interfaces import TextEngine
from tasks.mapreduce import expected_work, map_reduce
from tasks.pipeline import (
    TaskOptions,
    document_names,
    engine_errors,
    make_result,
    output_language,
    plan_context,
    stream_answer,
)
from tasks.prompts import load_template


def summarize(documents: Sequence[Document], options: TaskOptions, engine: TextEngine) -> Iterator[Event]:
    """Stream a summary of `documents`; the last event is the TaskResult."""
    options.validate()
    options = options.started()  # one deadline for every generation of a map-reduce summary
    started = time.perf_counter()
    language = output_language(documents, options)
    template = load_template("summarize", language)
    instruction = template.fill("instruction")
    context = plan_context("summarize", documents, instruction, "", options, engine, options.max_new_tokens)
    if context.strategy == "full":
        answer = yield from stream_answer(engine, context, options, template.stop)
        extra = {}
    else:
        with engine_errors():  # the speed is measured by a generation when it is not known yet
            speeds = engine.throughput()
        work = expected_work(context.document_tokens, context.budget, options.max_new_tokens)
        require_time(f"A summary of {document_names(documents)}", *work, speeds, options.time_limit)
        answer, sections = yield from map_reduce(documents, template, context.budget, options, engine)
        extra = {"sections": sections}
    yield make_result(
        "summarize", answer.text.strip(), context, documents, engine, answer.last, started, language, extra
    )

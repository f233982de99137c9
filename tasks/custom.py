"""The `custom` task: run the user's own instruction on the whole documents, or on the excerpts
that best match it when they are longer than the budget; with the sources and verified quotes."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from tasks.ask import MAX_QUESTION_CHARS
from tasks.documents import Document
from tasks.errors import InvalidRequest
from tasks.events import Event
from tasks.interfaces import TextEngine
from tasks.pipeline import TaskOptions, make_result, output_language, plan_context, stream_answer
from tasks.prompts import load_template
from tasks.sources import related_passages, source_list, verify_quotes

MAX_PROMPT_CHARS = MAX_QUESTION_CHARS  # an instruction is a request like a question: the same limit


def custom(documents: Sequence[Document], prompt: str, options: TaskOptions, engine: TextEngine) -> Iterator[Event]:
    """Stream the response to the instruction `prompt`; the last event is the TaskResult (with sources)."""
    prompt = clean_prompt(prompt)
    options.validate()
    started = time.perf_counter()
    language = output_language(documents, options)
    template = load_template("custom", language)
    instruction = template.fill("instruction", prompt=prompt)
    # The instruction is the retrieval query too: its words are the best guide to the passages it needs.
    context = plan_context("custom", documents, instruction, prompt, options, engine, options.max_new_tokens)
    answer = yield from stream_answer(engine, context, options, template.stop)
    text = answer.text.strip()
    retrieved = context.strategy == "retrieval"
    passages = context.chunks if retrieved else related_passages(documents, f"{prompt} {text}", engine)
    extra = {"prompt": prompt, "sources": source_list(passages), "quotes": verify_quotes(text, documents)}
    yield make_result("custom", text, context, documents, engine, answer.last, started, language, extra)


def clean_prompt(prompt: str | None) -> str:
    """The instruction on one line (so it cannot add a line that looks like the template's own cues),
    or InvalidRequest when it is empty or too long."""
    prompt = " ".join((prompt or "").split())
    if not prompt:
        raise InvalidRequest("type an instruction first")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"the instruction is too long (at most {MAX_PROMPT_CHARS:,} characters)")
    return prompt

"""The `classify` task: score every label by the model's log-likelihood and report probabilities.

Nothing is generated, so the answer is always one of the labels. The probabilities are a softmax
over the labels' log-likelihoods and sum to 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence

from tasks.documents import Document
from tasks.errors import InvalidRequest
from tasks.events import Event, Progress
from tasks.interfaces import TextEngine
from tasks.options import TaskOptions, comma_list
from tasks.pipeline import engine_errors, make_result, plan_context
from tasks.planning import LABEL_TOKENS, output_language
from tasks.prompts import engine_template, in_chat_frame

MAX_LABELS = 50


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """'invoice, contract,report' or a list -> unique, non-empty labels (at least two)."""
    unique = comma_list(labels)
    if len(unique) < 2:
        raise InvalidRequest("give at least two labels, separated by commas (e.g. invoice,contract,report)")
    if len(unique) > MAX_LABELS:
        raise InvalidRequest(f"give at most {MAX_LABELS} labels")
    return unique


def classify(
    documents: Sequence[Document], labels: str | Sequence[str], options: TaskOptions, engine: TextEngine
) -> Iterator[Event]:
    """Yield progress and the TaskResult: the best label as text, every label with a probability."""
    labels = parse_labels(labels)
    options.validate()
    started = time.perf_counter()
    language = output_language(documents, options)
    template = engine_template("classify", language, engine)
    instruction = template.fill("instruction", labels=", ".join(labels))
    longest = max(labels, key=lambda label: engine.count_tokens(" " + label))
    if engine.count_tokens(" " + longest) > LABEL_TOKENS:
        raise InvalidRequest(f"a label may have at most {LABEL_TOKENS} tokens; {longest[:60]!r} has more")
    context = plan_context("classify", documents, instruction, " ".join(labels), options, engine)
    yield Progress(f"Scoring {len(labels)} labels ({context.strategy})")
    with engine_errors():
        # In a chat the assistant's turn starts with the label; after a completion cue, a space does.
        continuations = [label if engine.chat_frame else " " + label for label in labels]
        prefix, prompt = in_chat_frame(engine.chat_frame, context.prefix, context.prompt)
        scores = engine.score(prompt, continuations, prefix=prefix, cache_salt=options.cache_salt)
    ranked = sorted(zip(labels, scores, _softmax(scores), strict=True), key=lambda row: -row[1])
    table = [{"label": label, "probability": round(p, 6), "log_likelihood": round(s, 4)} for label, s, p in ranked]
    yield make_result("classify", ranked[0][0], context, documents, engine, None, started, language, labels=table)


def _softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    weights = [math.exp(score - top) for score in scores]
    total = sum(weights)
    return [weight / total for weight in weights]

"""Event handlers: turn Workbench events into what the Gradio components show.

Each handler is also a named API endpoint, so every input is a plain value (file paths, strings,
numbers) and every output is text or JSON. Domain errors become `gr.Error` toasts with the same
message the CLI prints.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr

from tasks.errors import UserError
from tasks.events import Event, Progress, TaskResult, TextDelta
from tasks.pipeline import TaskOptions
from tasks.workbench import Workbench

logger = logging.getLogger(__name__)

Outputs = tuple[str, str, str, dict[str, Any]]  # (text, status line, sources as Markdown, details)
DEMO_NOTE = "tiny-random is a random demo model: its text is meaningless."
STRATEGY_NAMES = {"full": "whole document", "map-reduce": "map-reduce over sections", "retrieval": "best passages"}


@contextmanager
def user_errors() -> Iterator[None]:
    """Show domain errors as a toast; never let an unexpected one take the server down silently."""
    try:
        yield
    except UserError as exc:
        raise gr.Error(str(exc), print_exception=False) from exc
    except gr.Error:
        raise
    except Exception as exc:
        logger.exception("task failed")
        raise gr.Error(f"Something went wrong: {type(exc).__name__}: {exc}") from exc


def file_list(documents: str | list[str] | None) -> list[str]:
    if not documents:
        raise UserError("upload a document first (PDF, DOCX, HTML, TXT or Markdown)")
    return [documents] if isinstance(documents, str) else list(documents)


def make_options(
    workbench: Workbench,
    session: dict | None,
    language: str,
    max_new_tokens: float,
    temperature: float,
    strategy: str,
    budget: float,
) -> TaskOptions:
    """Task options from the settings panel, with a fresh cancel switch kept in the session (the
    Stop button sets it)."""
    cancel = threading.Event()
    if session is not None:
        session["cancel"] = cancel
    return workbench.options(
        max_new_tokens=int(max_new_tokens),
        temperature=float(temperature),
        strategy=strategy or "auto",
        language=None if language in (None, "", "auto") else language,
        context_budget=int(budget) if budget else workbench.requested_budget,
        cancel=cancel,
    )


def describe_documents(workbench: Workbench, documents: list[str] | None, options: TaskOptions) -> tuple[str, dict]:
    """The document card: names, pages, language, tokens against the budget, strategies, wait."""
    if not documents:
        return "No documents yet. Upload PDF, DOCX, HTML, TXT or Markdown files.", {}
    with user_errors():
        card = workbench.card(workbench.read(file_list(documents)), options)
    lines = [
        f"**{card.name}**",
        f"{card.pages:,} page{'s' if card.pages != 1 else ''} · {card.characters:,} characters · "
        f"language: {card.language or 'unknown'} · "
        + ("tokens: unknown" if card.tokens is None else f"{card.tokens:,} tokens"),
        card.note,
    ]
    if card.strategies:
        lines.append("Strategies: " + ", ".join(f"{task}: {STRATEGY_NAMES[s]}" for task, s in card.strategies.items()))
        lines.append(f"Expected wait for a summary: {card.expected_wait}")
    return "  \n".join(lines), card.to_json()


def stream_outputs(workbench: Workbench, run: Callable[[], Iterator[Event]]) -> Iterator[Outputs]:
    """Drive a task and yield (text so far, status, sources, details) after each event."""
    text, status = "", "Starting…"
    with user_errors():
        for event in run():
            if isinstance(event, Progress):
                status = event.message + "…"
            elif isinstance(event, TextDelta):
                text += event.text
                status = "Writing…"
            elif isinstance(event, TaskResult):
                yield event.text, final_status(event, workbench), sources_markdown(event), event.to_json()
                return
            yield text, status, "", {}


def final_status(result: TaskResult, workbench: Workbench) -> str:
    reasons = {"stop": "finished", "length": "reached the token limit", "cancelled": "stopped"}
    usage, timings = result.usage, result.timings
    parts = [
        f"Done ({reasons.get(result.finish_reason, result.finish_reason)})",
        f"strategy: {STRATEGY_NAMES.get(result.strategy, result.strategy)}",
        f"{usage.get('prompt_tokens', 0):,} prompt tokens"
        + (f" ({usage['cached_tokens']:,} cached)" if usage.get("cached_tokens") else ""),
        f"{usage.get('generated_tokens', 0):,} new tokens",
        f"{timings.get('total_seconds', 0):.1f} s",
    ]
    status = " · ".join(parts)
    if workbench.demo_model:
        status += f"  \n{DEMO_NOTE}"
    return status


def sources_markdown(result: TaskResult) -> str:
    """Sources with page numbers, verified quotes, map-reduce sections, unverified values."""
    extra = result.extra
    lines: list[str] = []
    for source in extra.get("sources", []):
        lines.append(f"**{source['label']}**  \n{_blockquote(source['text'])}")
    for quote in extra.get("quotes", []):
        if quote["verified"]:
            lines.append(f"✓ Quote found in {quote['document']}, page {quote['page']}:  \n{_blockquote(quote['text'])}")
        else:
            lines.append(f"✗ Not found in the documents, so not a quote: {quote['text']}")
    for section in extra.get("sections", []):
        pages = section["pages"]
        lines.append(f"**{section['document']}, pages {pages[0]}-{pages[-1]}**  \n{_blockquote(section['summary'])}")
    for name, value in (extra.get("unverified") or {}).items():
        lines.append(f"✗ `{name}`: the model wrote {value!r}, which is not in the documents, so it is null")
    return "\n\n".join(lines) or "No sources for this result."


def _blockquote(text: str) -> str:
    return "\n".join("> " + line for line in (text or "(empty)").splitlines())

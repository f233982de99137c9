"""Event handlers: turn Workbench events into what the Gradio components show.

Each handler is also a named API endpoint, so every input is a plain value (a file path, a
string, a number) and every output is text or JSON. Domain errors become `gr.Error` toasts with
the same message the CLI prints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr

from tasks.errors import UserError
from tasks.events import Event, Progress, TaskResult, TextDelta
from tasks.pipeline import GenerationOptions
from tasks.workbench import Workbench

logger = logging.getLogger(__name__)

Outputs = tuple[str, str, dict[str, Any]]  # (answer text, status line, details as JSON)

DEMO_NOTE = "tiny-random is a random demo model: its text is meaningless."


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


def require_file(path: str | None) -> str:
    if not path:
        raise UserError("upload a document first (PDF, TXT or Markdown)")
    return path


def describe_document(workbench: Workbench, path: str | None) -> tuple[str, dict[str, Any]]:
    """The document card: name, pages, tokens against the budget."""
    if not path:
        return "No document yet. Upload a PDF, TXT or Markdown file.", {}
    with user_errors():
        card = workbench.card(workbench.read(path))
    tokens = "unknown" if card.tokens is None else f"{card.tokens:,}"
    markdown = (
        f"**{card.name}**  \n{card.pages:,} page{'s' if card.pages != 1 else ''} · "
        f"{card.characters:,} characters · {tokens} tokens  \n{card.note}"
    )
    return markdown, card.to_json()


def stream_outputs(workbench: Workbench, run: Callable[[], Iterator[Event]]) -> Iterator[Outputs]:
    """Drive a task and yield (text so far, status, details) after each event."""
    text, status = "", "Starting…"
    with user_errors():
        for event in run():
            if isinstance(event, Progress):
                status = event.message + "…"
            elif isinstance(event, TextDelta):
                text += event.text
                status = "Writing…"
            elif isinstance(event, TaskResult):
                yield event.text, _final_status(event, workbench), event.to_json()
                return
            yield text, status, {}


def make_options(max_new_tokens: float, temperature: float) -> GenerationOptions:
    return GenerationOptions(max_new_tokens=int(max_new_tokens), temperature=float(temperature))


def _final_status(result: TaskResult, workbench: Workbench) -> str:
    reasons = {"stop": "finished", "length": "reached the token limit", "cancelled": "stopped"}
    usage, timings = result.usage, result.timings
    parts = [
        f"Done ({reasons.get(result.finish_reason, result.finish_reason)})",
        f"strategy: {result.strategy} (whole document)",
        f"{usage.get('prompt_tokens', 0):,} prompt tokens",
        f"{usage.get('generated_tokens', 0):,} new tokens",
        f"{timings.get('decode_tokens_per_second', 0):.1f} tokens/s",
        f"{timings.get('total_seconds', 0):.1f} s",
    ]
    status = " · ".join(parts)
    if workbench.demo_model:
        status += f"  \n{DEMO_NOTE}"
    return status

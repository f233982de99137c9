"""One task run as the page follows it: the text so far, the progress (bar, times, steps), the
map-reduce parts finished so far and, at the end, the result or the error that stopped it. The
tabs and the Ask thread turn these frames into their widgets; the error stays on the page, next
to the task that caused it, instead of only in a toast that vanishes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.i18n import strategy_name, tables, text
from app.progress import RunProgress
from app.results import ResultView
from app.streaming import paced
from tasks.errors import ModelUnavailable, UserError
from tasks.events import Event, PartDone, TaskResult, TextDelta

logger = logging.getLogger(__name__)
NO_MODEL = "no language model is available right now; please try again later"


@dataclass
class Frame:
    """Where a run stands: `details` is the result's JSON once it is done; `error` a message."""

    text: str = ""
    progress: str = ""
    parts: list[PartDone] = field(default_factory=list)
    details: dict[str, Any] | None = None
    error: str | None = None


def follow(start: Callable[[], Iterator[Event]], language: str, cancel=None, every: float = 1.0) -> Iterator[Frame]:
    """Run the task that `start()` begins and yield a Frame after each event (and every `every`
    seconds while it is quiet); the last frame has the details or the error."""
    progress, frame = RunProgress(language), Frame()
    try:
        for event in paced(start, every, cancel):
            progress.on(event)
            if isinstance(event, TextDelta):
                frame.text += event.text
            elif isinstance(event, PartDone):
                frame.parts.append(event)
            elif isinstance(event, TaskResult):
                frame.details, frame.text = event.to_json(), event.text
                view = ResultView.from_json(frame.details)
                stopped = view.finish_reason in ("cancelled", "time_limit")
                progress.end("stopped" if stopped else "done", _finish_words(view, language))
            frame.progress = progress.html()
            yield frame
    except UserError as exc:
        frame.error = str(exc)
        # The model's absence is said plainly in the panel; its reason (flags, host names) is the operator's.
        shown = NO_MODEL if isinstance(exc, ModelUnavailable) else frame.error
    except Exception as exc:  # a bug must not leave the page waiting: said here, logged in full
        logger.exception("task failed")
        frame.error = shown = f"Something went wrong: {type(exc).__name__}: {exc}"
    if frame.error is not None:
        progress.end("failed", shown)
        frame.progress = progress.html()
        yield frame


def _finish_words(view: ResultView, language: str) -> str:
    """The status line after "Done:" or "Stopped:" (how it ended is said once), in `language`:
    how it ended, the strategy, the tokens read (cached) and written, the seconds."""
    words = []
    if view.finish_reason not in ("stop", "cancelled"):
        key = f"status.{view.finish_reason}"
        words.append(text(key, language) if key in tables()["en"] else str(view.finish_reason))
    read = text("status.prompt_tokens", language, count=f"{view.prompt_tokens:,}")
    if view.cached_tokens:
        read += f" ({text('status.cached', language, count=f'{view.cached_tokens:,}')})"
    written = text("status.new_tokens", language, count=f"{view.generated_tokens:,}")
    words += [text("status.strategy", language, strategy=strategy_name(view.strategy, language)), read, written]
    words.append(f"{view.seconds:.1f} s")
    return " · ".join(words)

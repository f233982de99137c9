"""A running task's progress as people can trust it: a bar with a percentage, the time elapsed
and the time left (from the engine's measured speeds, as the task's events report them), and
named steps, each ticked only once it is done. Plain HTML (no gradio): the page shows it in a
live region, so screen readers hear the steps and the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape
from typing import Literal

from app.i18n import text
from app.steps import step_name
from tasks.events import Event, PartDone, Progress, TaskResult, TextDelta

Outcome = Literal["running", "done", "stopped", "failed"]
_SHOWN_STEPS = 6
_MOST_BEFORE_DONE = 0.97  # the bar never says 100% before the task has said it is done


class RunProgress:
    """Follows a task's events; `html()` draws where it stands."""

    def __init__(self, language: str = "en", clock: Callable[[], float] = time.monotonic) -> None:
        self.language = language
        self.clock = clock
        self.started = clock()
        self.steps: list[list] = []  # [name, done]
        self.expected_end: float | None = None  # when the task should be done, by the measured speeds
        self.parts: tuple[int, int] | None = None  # (parts done, parts in all) of a map-reduce summary
        self.headline = ""  # the step that names where the task is (a part, not that part's generation)
        self.outcome: Outcome = "running"
        self.message = ""

    def on(self, event: Event | None) -> None:
        """Take one event of the task (None: nothing new, only the clock moved)."""
        if isinstance(event, Progress):
            name = step_name(event.message, self.language)
            self._start(name)
            if self.parts is None or event.total or not event.expected_seconds:  # not one part's generation
                self.headline = name
            if event.expected_seconds:
                whole = event.step is not None and event.step == 1 and event.total
                # A map-reduce plan's first part carries the whole plan's time; a generation its own.
                if whole or self.parts is None:
                    self.expected_end = self.clock() + event.expected_seconds
            if event.total:
                self.parts = (event.step - 1 if event.step else 0, event.total)
        elif isinstance(event, PartDone):
            self._finish_current()
            self.parts = (event.number, event.total)
            # The parts so far say how long the rest takes better than the estimate made before them.
            projected = self.started + (self.clock() - self.started) * (event.total + 1) / event.number
            self.expected_end = max(self.expected_end or projected, projected)
        elif isinstance(event, TextDelta):
            self._start(text("step.writing", self.language))
        elif isinstance(event, TaskResult):
            self._finish_current()

    def end(self, outcome: Outcome, message: str = "") -> None:
        if outcome == "done":
            self._finish_current()
        self.outcome, self.message = outcome, message

    def fraction(self) -> float:
        if self.outcome == "done":
            return 1.0
        by_time = 0.0
        if self.expected_end is not None:
            span = max(1e-6, self.expected_end - self.started)
            by_time = (self.clock() - self.started) / span
        by_parts = self.parts[0] / (self.parts[1] + 1) if self.parts else 0.0  # +1: the merge
        return max(0.0, min(_MOST_BEFORE_DONE, max(by_time, by_parts)))

    def html(self) -> str:
        """The bar, the figures and the steps, in the page's language."""
        percent = round(self.fraction() * 100)
        elapsed = text("progress.elapsed", self.language, time=_duration(self.clock() - self.started))
        figures = [f"{percent}%", elapsed]
        if self.parts and self.outcome == "running":
            figures.insert(1, f"{self.parts[0]} / {self.parts[1]}")
        if self.outcome == "running" and self.expected_end is not None:
            left = self.expected_end - self.clock()
            key = "progress.left" if left > 0 else "progress.longer"
            figures.append(text(key, self.language, time=_duration(max(left, 1))))
        headline = self._headline()
        steps = "".join(self._step_html(name, done) for name, done in self.steps[-_SHOWN_STEPS:])
        return (
            f'<div class="run-progress {self.outcome}" role="status" aria-live="polite" dir="auto">'
            f'<div class="run-headline">{escape(headline)}</div>'
            f'<div class="run-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{percent}"><div class="run-fill" style="width:{percent}%"></div></div>'
            f'<div class="run-figures">{escape(" · ".join(figures))}</div>'
            f'<ol class="run-steps">{steps}</ol></div>'
        )

    def _headline(self) -> str:
        names = {"done": "progress.done", "stopped": "progress.stopped", "failed": "progress.failed"}
        if self.outcome in names:
            return text(names[self.outcome], self.language) + (f": {self.message}" if self.message else "")
        return self.headline or text("progress.starting", self.language)

    @staticmethod
    def _step_html(name: str, done: bool) -> str:
        mark, state = ("✓", "done") if done else ("▶", "current")
        return f'<li class="{state}"><span aria-hidden="true">{mark}</span> {escape(name)}</li>'

    def _start(self, name: str) -> None:
        if self.steps and self.steps[-1][0] == name:
            return
        self._finish_current()
        self.steps.append([name, False])

    def _finish_current(self) -> None:
        if self.steps:
            self.steps[-1][1] = True


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"

"""A running task shown as it goes: the text so far, its named steps, and at the end the status,
sources and details (every output is text or JSON, so each handler is also an API endpoint)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from app import untrusted
from app.inputs import user_errors
from app.results import (
    DEMO_NOTE,
    ResultView,
    sources_markdown,
    status_line,
)
from tasks.events import Event, Progress, TaskResult, TextDelta
from tasks.workbench import Workbench

Outputs = tuple[str, str, str, dict[str, Any]]  # (text, status line, sources as Markdown, details)


ProgressCallback = Callable[[Progress], None]  # the progress bar's update


def stream_outputs(
    workbench: Workbench,
    run: Callable[[], Iterator[Event]],
    report: ProgressCallback | None = None,
    show: Callable[[str], str] = untrusted.markdown,
) -> Iterator[Outputs]:
    """Drive a task and yield (text so far, steps, sources, details) after each event. Every
    progress event becomes a named step (and, through `report`, the progress bar). The text is
    shown through `show` (Markdown that cannot load anything; the raw text stays in the details)."""
    text, steps = "", Steps()
    with user_errors():
        for event in run():
            if isinstance(event, Progress):
                steps.start(event.message)
                if report is not None:
                    report(event)
            elif isinstance(event, TextDelta):
                text += event.text
                steps.start("Writing")
            elif isinstance(event, TaskResult):
                details = event.to_json()
                view = ResultView.from_json(details)
                yield show(event.text), steps.finish(final_status(view, workbench)), sources_markdown(view), details
                return
            yield show(text), steps.markdown(), "", {}


class Steps:
    """The named steps of a running task, shown as a list: done ones ticked, the current last."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def start(self, name: str) -> None:
        if not self.names or self.names[-1] != name:
            self.names.append(name)

    def markdown(self) -> str:
        done = [f"✓ {untrusted.plain(name)}" for name in self.names[-6:-1]]  # names can hold file names
        current = [f"▶ {untrusted.plain(self.names[-1])}…"] if self.names else ["Starting…"]
        return "  \n".join(done + current)

    def finish(self, status: str) -> str:
        return "  \n".join([f"✓ {untrusted.plain(name)}" for name in self.names[-6:]] + [untrusted.plain(status)])


def final_status(view: ResultView, workbench: Workbench) -> str:
    """The status line under a finished result, with the demo model's warning."""
    return status_line(view) + (f"\n{DEMO_NOTE}" if workbench.demo_model else "")


_DONE = object()


def paced(run: Callable[[], Iterator[Event]], every: float = 1.0,
          cancel: threading.Event | None = None) -> Iterator[Event | None]:  # fmt: skip
    """The task's events, with None in between at least every `every` seconds while it works (a
    long prefill says nothing for a minute: the page's clock and bar move on anyway). The task
    runs in a thread; its exception is raised here. When the page goes away (this generator is
    closed), `cancel` is set so the task stops within a token."""
    events: queue.Queue = queue.Queue()  # unbounded: a closed page must never leave the task blocked
    failure: list[BaseException] = []
    event: Any = None

    def work() -> None:
        try:
            for event in run():
                events.put(event)
        except BaseException as exc:  # raised again in the page's thread
            failure.append(exc)
        finally:
            events.put(_DONE)

    threading.Thread(target=work, name="ui-task", daemon=True).start()
    try:
        while True:
            try:
                event = events.get(timeout=every)
            except queue.Empty:
                yield None
                continue
            if event is _DONE:
                break
            yield event
    finally:
        if cancel is not None and not failure and event is not _DONE:
            cancel.set()
    if failure:
        raise failure[0]

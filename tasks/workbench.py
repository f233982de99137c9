"""The plain-Python front door that the UI, the CLI, the Gradio API and the tests all use.

A Workbench holds the engine (or the reason there is none) and the budget setting. It reads
files into documents, describes them against the budget (tokens, language, the strategy each
task will use, the expected wait), and runs tasks on one or several documents.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.ask import ask
from tasks.budget import describe_wait
from tasks.classify import classify
from tasks.custom import custom
from tasks.documents import NO_DOCUMENTS, Document, display_name, load_document
from tasks.errors import InvalidRequest, ModelUnavailable, TooLongToRun, UserError
from tasks.events import Event, Progress, TaskResult
from tasks.extract import ExtractionSpec, extract
from tasks.interfaces import EngineError, EngineUnavailable, TextEngine
from tasks.ocr import OcrCache, OcrRequest
from tasks.options import TaskOptions
from tasks.planning import Plan, budget_for, output_language, plan_task
from tasks.prompts import TASKS, engine_template, render_documents
from tasks.summarize import summarize

MAX_DOCUMENTS = 20
RECONNECT_SECONDS = 10.0  # how often requests try a model server that is not answering


@dataclass(frozen=True)
class DocumentCard:
    """What a person sees about loaded documents before running a task."""

    name: str
    pages: int
    characters: int
    language: str | None
    tokens: int | None
    budget: int | None
    fits: bool | None  # None when there is no model to count tokens with
    strategies: dict[str, str]  # task -> the strategy it will use
    parts: dict[str, int]  # task -> its generations, not counting merges (a map-reduce summary's sections)
    refused: dict[str, str]  # task -> why it would be refused with these options
    expected_wait: str | None
    note: str
    ocr_pages: int = 0  # pages read by OCR (their text may hold misread words)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelConnection:
    """A model server reached: its engine, the status line that describes it, and whether it
    serves the random demo model."""

    engine: TextEngine
    model_status: str
    demo_model: bool = False


class Workbench:
    def __init__(
        self,
        engine: TextEngine | None = None,
        *,
        model_status: str = "",
        demo_model: bool = False,
        unavailable_reason: str | None = None,
        context_budget: int | None = None,
        time_limit: float | None = None,
        concurrency: int = 1,
        reconnect: Callable[[], ModelConnection] | None = None,
    ):
        self.engine = engine
        self.model_status = model_status
        self.demo_model = demo_model  # a random demo model: its text is meaningless
        self.unavailable_reason = unavailable_reason
        self.requested_budget = context_budget
        self.time_limit = time_limit  # seconds per request (None: no limit); the web server sets one
        self.concurrency = concurrency  # tasks the web UI runs at once: one per in-process model; a server batches more
        # Without an engine: connects to the model server that was not answering at start; requests
        # try it again, at most every RECONNECT_SECONDS, until it answers.
        self.reconnect = reconnect
        self.ocr_cache = OcrCache()  # scanned pages read once per session and file (by salt: never shared)
        self._reconnecting = threading.Lock()
        self._next_reconnect = 0.0

    @property
    def on_server(self) -> bool:
        """The model runs on a server (the openai backend), not in this process."""
        return self.engine is not None and self.engine.is_remote

    @property
    def budget(self) -> int | None:
        """The context budget in tokens, or None when no model is loaded."""
        return None if self.engine is None else budget_for(self.engine, self.options())

    def options(self, **values: Any) -> TaskOptions:
        """Task options with this workbench's budget setting filled in."""
        values.setdefault("context_budget", self.requested_budget)
        values.setdefault("time_limit", self.time_limit)
        return TaskOptions(**values)

    def read(
        self,
        paths: Sequence[str | Path] | str | Path,
        password: str | None = None,
        *,
        cache_salt: str | None = None,
        progress: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Document]:
        """Read one or several files (same-named files get a number, so sources stay clear);
        `password` opens encrypted PDFs. Scanned PDF pages are read by OCR, saying how far it got
        through `progress`; with a `cache_salt` (a session's), they are read once for that session."""
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not paths:
            raise InvalidRequest(NO_DOCUMENTS)
        if len(paths) > MAX_DOCUMENTS:
            raise InvalidRequest(f"load at most {MAX_DOCUMENTS} documents at a time")
        documents: list[Document] = []
        for path, name in zip(paths, self.document_names(paths), strict=True):
            cache = self.ocr_cache if cache_salt is not None else None
            ocr = OcrRequest(progress=progress, cache=cache, cache_salt=cache_salt, cancel=cancel)
            documents.append(load_document(path, name, password=password, ocr=ocr))
        return documents

    @staticmethod
    def document_names(paths: Sequence[str | Path]) -> list[str]:
        """The names `read` gives the documents at `paths`, in order: each file's display name,
        numbered from the second file of the same name ("a.pdf", "a.pdf (2)"). The UI maps a
        citation's document back to its file with these."""
        names: list[str] = []
        seen: dict[str, int] = {}
        for path in paths:
            name = display_name(Path(path).name)
            seen[name] = seen.get(name, 0) + 1
            names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
        return names

    def card(self, documents: Sequence[Document], options: TaskOptions | None = None) -> DocumentCard:
        """Describe `documents` (together) against the budget, with each task's plan: the very
        `plan_task` the task calls, so the strategy and the parts are what the task will do."""
        options = options or self.options()
        options.validate()  # as every task does: the card plans with what a task would accept
        name = ", ".join(d.name for d in documents)
        pages, characters = sum(len(d.pages) for d in documents), sum(d.char_count for d in documents)
        language = output_language(documents, dataclasses.replace(options, language=None))
        if self._current_engine() is None:
            note = f"Token count unavailable: {self.unavailable_reason or 'no model is loaded'}"
            note += _reading_note(documents)
            return DocumentCard(name, pages, characters, language, None, None, None, {}, {}, {}, None, note,
                                _ocr_count(documents))  # fmt: skip
        tokens = self.engine.count_tokens(render_documents(documents))
        budget = budget_for(self.engine, options)
        plans, refusals = {}, {}
        for task in TASKS:
            try:
                plans[task] = plan_task(task, documents, options, self.engine, document_tokens=tokens,
                                        speeds=self._speeds_if_known)  # fmt: skip
            except UserError as exc:  # the task would refuse: the card says why
                refusals[task] = exc
        refused = {task: str(exc) for task, exc in refusals.items()}
        strategies = {task: plan.strategy for task, plan in plans.items()}
        parts = {task: plan.parts for task, plan in plans.items()}
        fits = tokens + self._summary_instruction_tokens(documents, options) + options.max_new_tokens <= budget
        wait = self._expected_wait(plans.get("summarize"), refusals.get("summarize"), options, name)
        note = (
            fit_note(tokens, budget, fits)
            + _request_room_note(plans, fits and options.strategy == "auto")
            + _reading_note(documents)
        )
        return DocumentCard(
            name,
            pages,
            characters,
            language,
            tokens,
            budget,
            fits,
            strategies,
            parts,
            refused,
            wait,
            note,
            _ocr_count(documents),
        )

    def text(self, paths: Sequence[str | Path] | str | Path, password: str | None = None) -> str:
        """The normalized text of the documents, with page markers, as the model reads it."""
        return render_documents(self.read(paths, password))

    # Each task takes `password` for encrypted PDFs: it opens files, it is not a task option.
    def summarize(self, paths, options: TaskOptions, *, password: str | None = None) -> Iterator[Event]:
        return self._run(paths, password, options, lambda docs, engine: summarize(docs, options, engine))

    def ask(self, paths, question: str, options: TaskOptions, *, password: str | None = None) -> Iterator[Event]:
        return self._run(paths, password, options, lambda docs, engine: ask(docs, question, options, engine))

    def extract(
        self, paths, spec: ExtractionSpec, options: TaskOptions, *, password: str | None = None
    ) -> Iterator[Event]:
        return self._run(paths, password, options, lambda docs, engine: extract(docs, spec, options, engine))

    def classify(
        self, paths, labels: str | Sequence[str], options: TaskOptions, *, password: str | None = None
    ) -> Iterator[Event]:
        return self._run(paths, password, options, lambda docs, engine: classify(docs, labels, options, engine))

    def custom(self, paths, prompt: str, options: TaskOptions, *, password: str | None = None) -> Iterator[Event]:
        return self._run(paths, password, options, lambda docs, engine: custom(docs, prompt, options, engine))

    def _run(
        self,
        paths,
        password: str | None,
        options: TaskOptions,
        task: Callable[[list[Document], TextEngine], Iterator[Event]],
    ) -> Iterator[Event]:
        engine = self._require_engine()
        yield Progress("Reading the documents")
        started = time.perf_counter()
        documents = yield from self._read_reporting(paths, password, options)
        read_seconds = time.perf_counter() - started
        for event in task(documents, engine):
            if isinstance(event, TaskResult):
                event = dataclasses.replace(event, timings={"read_seconds": round(read_seconds, 3), **event.timings})
            yield event

    def _read_reporting(
        self, paths, password: str | None, options: TaskOptions
    ) -> Generator[Progress, None, list[Document]]:
        """Read in a thread, passing on what the read says (OCR page 3 of 40) as Progress events;
        returns the documents (`documents = yield from ...`)."""
        messages: queue.Queue[str | None] = queue.Queue()
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["documents"] = self.read(paths, password, cache_salt=options.cache_salt,
                                                 progress=messages.put, cancel=options.cancel)  # fmt: skip
            except BaseException as exc:  # raised again in the caller's thread
                outcome["error"] = exc
            finally:
                messages.put(None)

        threading.Thread(target=work, name="read-documents", daemon=True).start()
        while (message := messages.get()) is not None:
            yield Progress(message)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["documents"]

    def _require_engine(self) -> TextEngine:
        if self._current_engine() is None:
            raise ModelUnavailable(f"generation is unavailable: {self.unavailable_reason or 'no model is loaded'}")
        return self.engine

    def _current_engine(self) -> TextEngine | None:
        """The engine; without one, a model server that was not answering gets another try."""
        if self.engine is not None or self.reconnect is None:
            return self.engine
        with self._reconnecting:
            if self.engine is None and time.monotonic() >= self._next_reconnect:
                self._next_reconnect = time.monotonic() + RECONNECT_SECONDS
                try:
                    connection = self.reconnect()
                except (EngineError, UserError) as exc:  # the server is still down, or refuses us
                    self.unavailable_reason = str(exc)
                else:
                    self.model_status, self.demo_model = connection.model_status, connection.demo_model
                    self.engine, self.unavailable_reason = connection.engine, None
        return self.engine

    def _summary_instruction_tokens(self, documents: Sequence[Document], options: TaskOptions) -> int:
        template = engine_template("summarize", output_language(documents, options), self.engine)
        return self.engine.count_tokens(template.fill("instruction"))

    def _speeds_if_known(self) -> tuple[float, float] | None:
        try:
            return self.engine.throughput()
        except EngineError:  # the expected wait says why
            return None

    def _expected_wait(self, plan: Plan | None, refusal: UserError | None, options: TaskOptions, name: str) -> str:
        """How long a summary will take; for one the summarize task would refuse, why."""
        if isinstance(refusal, TooLongToRun):
            return f"too long to run: {refusal}"
        if plan is None:
            return f"none: the summary would be refused: {refusal}"
        try:
            speeds = self.engine.throughput()
        except EngineUnavailable:  # the model server is down: the card still describes the document
            return "unknown (the model server cannot be reached)"
        except EngineError as exc:  # the speed could not be measured (out of memory, say)
            return f"unknown ({exc})"
        try:
            plan.require_time(f"A summary of {name}", speeds, options.time_limit)
        except TooLongToRun as exc:
            return f"too long to run: {exc}"
        return describe_wait(plan.expected_seconds(speeds))


def fit_note(tokens: int, budget: int, fits: bool) -> str:
    """How the document's tokens compare with the budget, and what the tasks do about it (the web
    page says the same in its own language: app/locales, cards.fits / near / over)."""
    share = tokens / budget
    if fits:
        return f"{tokens:,} of {budget:,} tokens ({share:.0%} of the context budget): the whole document fits"
    if share < 1:  # the document alone would fit; with the instruction and the answer it does not
        return (
            f"{tokens:,} of {budget:,} tokens ({share:.0%} of the context budget): with the instruction and the "
            f"answer it does not fit, so nothing is cut: {_OVER_BUDGET}"
        )
    return f"{tokens:,} tokens, {share:.1f}x the context budget of {budget:,}: nothing is cut; {_OVER_BUDGET}"


_OVER_BUDGET = (
    "summaries use map-reduce over sections, questions, extraction and instructions use the best-matching passages"
)


def _request_room_note(plans: dict[str, Plan], fits: bool) -> str:
    """Whole documents that fit a summary can still be too long for tasks that keep room for
    their request (a question, labels): said, so the note does not contradict their strategies."""
    narrow = [task for task, plan in plans.items() if plan.strategy == "retrieval" and plan.request_tokens]
    if not fits or not narrow:
        return ""
    room = max(plans[task].request_tokens for task in narrow)
    return (f" for a summary; {', '.join(narrow)} keep {room:,} tokens for the request, so they use the "
            "best-matching passages")  # fmt: skip


def _reading_note(documents: Sequence[Document]) -> str:
    """How the pages were read, where it matters: pages read by OCR (misread words are possible),
    scanned pages that could not be read (and what to install), pages without any text."""
    notes = []
    for document in documents:
        ocr = document.ocr_pages
        if ocr:
            languages = document.meta.get("ocr_languages", "")
            notes.append(f"{document.name}: {_pages(ocr)} read by OCR (Tesseract, {languages}); check quotes from "
                         f"{'them' if len(ocr) > 1 else 'it'} against the page")  # fmt: skip
        notes += [f"{document.name}: {document.meta[key]}" for key in ("ocr_note", "ocr_missing")
                  if key in document.meta]  # fmt: skip
        tried = set(document.meta.get("ocr_pages") or [])
        empty = document.meta.get("empty_pages") or []
        if blank_scans := [number for number in empty if number in tried]:
            notes.append(f"{document.name}: OCR found no text on {_pages(blank_scans)}")
        if (blank := [number for number in empty if number not in tried]) and "ocr_missing" not in document.meta:
            notes.append(f"{document.name} has no text on {_pages(blank)}")
    return (". " + "; ".join(notes) + ".") if notes else ""


def _ocr_count(documents: Sequence[Document]) -> int:
    return sum(len(document.ocr_pages) for document in documents)


def _pages(numbers: Sequence[int]) -> str:
    """`page 3`, `pages 1-4, 7` (runs of consecutive pages as ranges; at most 12 listed)."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    parts = [str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs]
    listed = ", ".join(parts[:12]) + (", …" if len(parts) > 12 else "")
    return f"page{'s' if len(numbers) > 1 else ''} {listed}"

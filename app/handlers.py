"""Event handlers: turn Workbench events into what the Gradio components show.

Each handler is also a named API endpoint, so every input is a plain value (file paths, strings,
numbers) and every output is text or JSON. Domain errors become `gr.Error` toasts with the same
message the CLI prints.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr

from app import untrusted
from app.files import app_folders, remove_stale
from tasks.errors import UserError
from tasks.events import Event, Progress, TaskResult, TextDelta
from tasks.pipeline import TaskOptions
from tasks.workbench import DocumentCard, Workbench

logger = logging.getLogger(__name__)

Outputs = tuple[str, str, str, dict[str, Any]]  # (text, status line, sources as Markdown, details)
DEMO_NOTE = "tiny-random is a random demo model: its text is meaningless."
STRATEGY_NAMES = {"full": "whole document", "map-reduce": "map-reduce over sections", "retrieval": "best passages"}
TASK_NAMES = {
    "summarize": "Summarize",
    "ask": "Ask",
    "extract": "Extract",
    "classify": "Classify",
    "custom": "Custom prompt",
}


@contextmanager
def user_errors() -> Iterator[None]:
    """Show domain errors as a toast; never let an unexpected one take the server down silently."""
    try:
        yield
    except UserError as exc:  # toasts render HTML: a message can quote a file name or a schema
        raise gr.Error(untrusted.html(str(exc)), print_exception=False) from exc
    except gr.Error:
        raise
    except Exception as exc:
        logger.exception("task failed")
        raise gr.Error(untrusted.html(f"Something went wrong: {type(exc).__name__}: {exc}")) from exc


def file_list(documents: str | list[str] | None) -> list[str]:
    if not documents:
        raise UserError("upload a document first (PDF, DOCX, HTML, TXT or Markdown)")
    return [documents] if isinstance(documents, str) else list(documents)


def make_options(
    workbench: Workbench,
    session: dict | None,
    language: str,
    max_new_tokens: Any,
    temperature: Any,
    strategy: str,
    budget: Any,
) -> TaskOptions:
    """Task options from the settings panel, with a fresh cancel switch kept in the session (the
    Stop button sets it) and the session's cache salt. The numbers come as an API caller sent
    them (the panel's number fields pass any JSON value through), so each is checked here, with
    a message that names it; the ranges are checked by TaskOptions.validate."""
    with user_errors():  # also for callers outside a task's own user_errors (the info endpoint)
        numbers = {
            "max_new_tokens": _setting(max_new_tokens, "max new tokens", whole=True),
            "temperature": _setting(temperature, "temperature"),
            "context_budget": _setting(budget, "context budget", whole=True) or workbench.requested_budget,
        }
    cancel = threading.Event()
    if session is not None:
        session["cancel"] = cancel
    return workbench.options(
        cache_salt=session_salt(session),
        strategy=strategy or "auto",
        language=None if language in (None, "", "auto") else language,
        cancel=cancel,
        **numbers,
    )


def _setting(value: Any, label: str, whole: bool = False) -> float | int:
    """A number setting from the API: not a string, null, true, NaN or Infinity (Python's JSON
    reader accepts the last two)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{label} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise UserError(f"{label} must be a finite number, not {value!r}")
    if whole and value != int(value):
        raise UserError(f"{label} must be a whole number, not {value!r}")
    return int(value) if whole else float(value)


def session_salt(session: dict | None) -> str | None:
    """The trust boundary of this browser session's cached documents (as vLLM's `cache_salt`): a
    random secret made at its first task, kept in its server-side state, never sent to a browser.
    A session reuses only what it prefilled itself, so neither its usage figures nor its timing
    tell it what another session read or asked. Per session rather than per signed-in user: one
    account is often shared by a team, and a second tab pays only one more read of a document."""
    if session is None:
        return None
    return session.setdefault("cache_salt", secrets.token_urlsafe(32))


def describe_documents(
    workbench: Workbench, documents: list[str] | None, options: TaskOptions, password: str | None = None
) -> tuple[str, dict]:
    """One card per document (name, pages, language, tokens, a gauge of its tokens against the
    budget) and, for several, a card for them together; each with the strategy every task will
    use. Returns (HTML, JSON)."""
    if not documents:
        return EMPTY_CARDS, {}
    with user_errors():
        loaded = workbench.read(file_list(documents), password)
        cards = [workbench.card([document], options) for document in loaded]
        together = workbench.card(loaded, options) if len(loaded) > 1 else cards[0]
    html = "".join(_card_html(card) for card in cards)
    if len(loaded) > 1:
        html += _card_html(together, title=f"All {len(loaded)} documents together")
    html += _strategies_html(together)
    data = {**together.to_json(), "documents": [card.to_json() for card in cards]}
    return f'<div class="doc-cards">{html}</div>', data


EMPTY_CARDS = (
    '<div class="doc-cards empty">No documents yet. Upload PDF, DOCX, HTML, TXT or Markdown files, '
    "or try an example.</div>"
)


def _card_html(card: DocumentCard, title: str | None = None) -> str:
    pages = f"{card.pages:,} page{'s' if card.pages != 1 else ''}"
    tokens = "tokens: unknown" if card.tokens is None else f"{card.tokens:,} tokens"
    facts = f"{pages} · {card.characters:,} characters · language: {card.language or 'unknown'} · {tokens}"
    return (
        f'<div class="doc-card"><div class="doc-name">{escape(title or card.name)}</div>'
        f'<div class="doc-facts">{escape(facts)}</div>{_gauge_html(card)}'
        f'<div class="doc-note">{escape(card.note)}</div></div>'
    )


def _gauge_html(card: DocumentCard) -> str:
    if card.tokens is None or not card.budget:
        return ""
    share = card.tokens / card.budget
    state = "fits" if share <= 1 else "over"
    width = min(100.0, share * 100)
    label = f"{card.tokens:,} / {card.budget:,} tokens of the context budget ({share:.0%})"
    return (
        f'<div class="gauge {state}" role="meter" aria-valuenow="{card.tokens}" aria-valuemax="{card.budget}" '
        f'title="{escape(label)}"><div class="gauge-fill" style="width:{width:.1f}%"></div></div>'
    )  # the card's note under it says the same in words


def _strategies_html(card: DocumentCard) -> str:
    if not card.strategies:
        return ""
    rows = "".join(
        f"<li><b>{escape(TASK_NAMES.get(task, task))}</b>: {escape(STRATEGY_NAMES.get(strategy, strategy))}</li>"
        for task, strategy in card.strategies.items()
    )
    wait = f'<div class="doc-note">Expected wait for a summary: {escape(card.expected_wait or "unknown")}</div>'
    return f'<div class="doc-card strategies"><div class="doc-name">Each task will use</div><ul>{rows}</ul>{wait}</div>'


Report = Callable[[Progress], None]


def stream_outputs(
    workbench: Workbench,
    run: Callable[[], Iterator[Event]],
    report: Report | None = None,
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
                yield show(event.text), steps.finish(final_status(event, workbench)), sources_markdown(details), details
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


def final_status(result: TaskResult, workbench: Workbench) -> str:
    reasons = {
        "stop": "finished",
        "length": "reached the token limit",
        "cancelled": "stopped",
        "time_limit": "stopped at the time limit",
    }
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
        status += f"\n{DEMO_NOTE}"
    return status


def sources_markdown(extra: dict[str, Any]) -> str:
    """Sources with page numbers, verified quotes, map-reduce sections, unverified values, from a
    result's JSON. Every passage, name and value is shown as plain text, exactly as written."""
    plain = untrusted.plain
    lines: list[str] = []
    for source in extra.get("sources", []):
        lines.append(f"**{plain(source['label'])}**  \n{_blockquote(source['text'])}")
    for quote in extra.get("quotes", []):
        if quote["verified"]:
            where = plain(f"{quote['document']}, page {quote['page']}")
            lines.append(f"✓ Quote found in {where}:  \n{_blockquote(quote['text'])}")
        else:
            lines.append(f"✗ Not found in the documents, so not a quote: {plain(quote['text'])}")
    for section in extra.get("sections", []):
        pages = section["pages"]
        label = plain(f"{section['document']}, pages {pages[0]}-{pages[-1]}")
        lines.append(f"**{label}**  \n{_blockquote(section['summary'])}")
    for name, value in (extra.get("unverified") or {}).items():
        lines.append(plain(f"✗ {name}: the model wrote {value!r}, which is not in the documents, so it is null"))
    return "\n\n".join(lines) or "No sources for this result."


def _blockquote(text: str) -> str:
    return "\n".join(f"> {untrusted.plain(line)}  " for line in (text or "(empty)").splitlines())


EXPORT_PREFIX = "export-"  # one folder per export, inside the app's exports folder (app.files)


def export_files(details: dict[str, Any] | None, keep_seconds: float | None = None) -> tuple[str, str]:
    """Write a finished result as Markdown and as JSON into a fresh private folder inside the app's
    exports folder; return both paths. Exports older than `keep_seconds` are deleted first (Gradio
    serves its own copy)."""
    if not details or "task" not in details:
        raise gr.Error("run a task first: there is nothing to export yet", print_exception=False)
    if keep_seconds is not None:
        delete_old_exports(keep_seconds)
    folder = Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX, dir=app_folders().exports))
    stem = _file_stem(f"{details['task']}-{details.get('document', {}).get('name', 'documents')}")
    markdown_path, json_path = folder / f"{stem}.md", folder / f"{stem}.json"
    try:
        markdown_path.write_text(result_markdown(details), encoding="utf-8")
        json_path.write_text(json.dumps(details, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)  # no half-written export left to fill the disk further
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise gr.Error("the server is out of disk space, so the export could not be written; try again "
                           "later", print_exception=False) from exc  # fmt: skip
        raise
    return str(markdown_path), str(json_path)


def delete_old_exports(keep_seconds: float) -> int:
    """Delete this app's export files older than `keep_seconds` (and the folders that this
    empties); return how many files went."""
    return remove_stale(app_folders().exports, keep_seconds)


def result_markdown(details: dict[str, Any]) -> str:
    """A finished result as a Markdown document: what was asked, the answer, the sources, the run.
    Untrusted text in it is made as safe as on the page: a Markdown viewer loads nothing from it."""
    plain = untrusted.plain
    task = TASK_NAMES.get(details["task"], details["task"])
    document = details.get("document", {})
    lines = [f"# {task}: {plain(document.get('name', 'documents'))}", ""]
    for key, label in (("question", "Question"), ("prompt", "Instruction")):
        if details.get(key):
            lines += [f"**{label}:** {plain(details[key])}", ""]
    body = details.get("text", "")
    lines += [untrusted.code_block(body, "json") if details["task"] == "extract" else untrusted.markdown(body)]
    lines += ["", "## Sources", "", sources_markdown(details), "", "## Run", ""]
    usage, timings = details.get("usage", {}), details.get("timings", {})
    lines += [
        f"- model: {plain(details.get('model', 'unknown'))}",
        f"- strategy: {STRATEGY_NAMES.get(details.get('strategy'), details.get('strategy'))}",
        f"- language: {details.get('language', 'unknown')}",
        f"- {document.get('pages', 0):,} pages, {usage.get('prompt_tokens', 0):,} prompt tokens, "
        f"{usage.get('generated_tokens', 0):,} new tokens, {timings.get('total_seconds', 0):.1f} s",
        f"- finished: {details.get('finish_reason', 'unknown')}",
    ]
    return "\n".join(lines) + "\n"


def _file_stem(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text, flags=re.UNICODE).strip("-.")[:80] or "result"

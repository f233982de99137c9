"""A finished task's result in every form a person sees: the one formatter of the command line, the
web UI and the exports.

- `json_text`: the result as one JSON object (the CLI's `--json`, the JSON export; the UI shows the
  same object as its details).
- `status_line`: how the run went (finish, strategy, tokens, time): under the UI's answer, on the
  CLI's stderr, in the Markdown export.
- `sources_markdown` / `sources_text`: the passages with page numbers, checked quotes, map-reduce
  sections and checked values, as Markdown (UI, export) or as lines (CLI).
- `body_text` / `result_markdown`: the result itself as the CLI prints it; the whole result as a
  Markdown document (export).

Every form starts from a `ResultView`, and `ResultView.from_json` is the one place that reads a
result's keys: an export gets the result back as JSON (from the page, or from an API caller), so
the JSON is what all forms share. Untrusted text goes through `app.untrusted`. No gradio here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from app import untrusted
from tasks.events import TaskResult
from tasks.sources import OCR_MARK

DEMO_NOTE = "tiny-random is a random demo model: its text is meaningless."
TASK_NAMES = {
    "summarize": "Summarize",
    "ask": "Ask",
    "extract": "Extract",
    "classify": "Classify",
    "custom": "Custom prompt",
}
STRATEGY_NAMES = {"full": "whole document", "map-reduce": "map-reduce over sections", "retrieval": "best passages"}
FINISH_NAMES = {
    "stop": "finished",
    "length": "reached the token limit",
    "cancelled": "stopped",
    "time_limit": "stopped at the time limit",
    "repetition": "stopped: the model began repeating itself",
    "empty": "the model gave no answer",
}
REQUEST_NAMES = {"question": "Question", "prompt": "Instruction"}  # the request text a task was given

# A place in the documents (a retrieved passage, a map-reduce section), a quote found in them, a
# quote or an extracted value that is in none of them, an extracted value cut off at the limit.
SourceKind = Literal["cited", "source", "section", "found", "missing", "capped"]
_MARKS = {"found": "✓ ", "missing": "✗ ", "capped": "⚠ "}


@dataclass(frozen=True)
class SourceLine:
    """One entry of a result's sources: its heading, and the passage it shows (if any)."""

    kind: SourceKind
    heading: str
    passage: str | None = None


@dataclass(frozen=True)
class ResultView:
    """What the forms show of a result, read once from its JSON."""

    task: str
    text: str = ""
    strategy: str | None = None
    finish_reason: str | None = None
    model: str | None = None
    language: str | None = None
    document: str = "documents"  # the documents' names
    pages: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    request: tuple[str, str] | None = None  # ("question" | "prompt", the text the person wrote)
    labels: list[tuple[str, float]] = field(default_factory=list)  # classify: (label, probability), best first
    sources: list[SourceLine] = field(default_factory=list)

    @classmethod
    def from_result(cls, result: TaskResult) -> ResultView:
        return cls.from_json(result.to_json())

    @classmethod
    def from_json(cls, details: dict[str, Any]) -> ResultView:
        """The one reader of a result's JSON (a TaskResult's `to_json`, or what an API caller sent
        back to the export endpoint: missing parts read as empty)."""
        document, usage = details.get("document") or {}, details.get("usage") or {}
        request = next(((key, details[key]) for key in REQUEST_NAMES if details.get(key)), None)
        return cls(
            task=details.get("task", ""),
            text=details.get("text") or "",
            strategy=details.get("strategy"),
            finish_reason=details.get("finish_reason"),
            model=details.get("model"),
            language=details.get("language"),
            document=document.get("name", "documents"),
            pages=document.get("pages", 0),
            prompt_tokens=usage.get("prompt_tokens", 0),
            cached_tokens=usage.get("cached_tokens") or 0,
            generated_tokens=usage.get("generated_tokens", 0),
            seconds=(details.get("timings") or {}).get("total_seconds", 0),
            request=request,
            labels=[(row["label"], row["probability"]) for row in details.get("labels") or []],
            sources=_source_lines(details),
        )


def _source_lines(details: dict[str, Any]) -> list[SourceLine]:
    lines, numbers = [], set()
    for citation in details.get("citations") or []:  # the sentences the answer's markers [n] stand for
        if citation["number"] not in numbers:
            numbers.add(citation["number"])
            place = f"[{citation['number']}] {citation['document']}, page {citation['page']}"
            lines.append(SourceLine("cited", place + (OCR_MARK if citation.get("ocr") else ""), citation["text"]))
    lines += [SourceLine("source", source["label"], source["text"]) for source in details.get("sources") or []]
    for quote in details.get("quotes") or []:
        found = f"Quote found in {quote['document']}, page {quote['page']}" + (OCR_MARK if quote.get("ocr") else "")
        missing = "Not found in the documents, so not a quote"
        lines.append(SourceLine("found", found, quote["text"]) if quote["verified"] else
                     SourceLine("missing", missing, quote["text"]))  # fmt: skip
    for section in details.get("sections") or []:
        pages = section["pages"]
        lines.append(SourceLine("section", f"{section['document']}, pages {pages[0]}-{pages[-1]}", section["summary"]))
    for name, value in (details.get("unverified") or {}).items():
        guess = f"{name}: the model wrote {value!r}, which is not in the documents, so it is null"
        lines.append(SourceLine("missing", guess))
    for name in details.get("capped") or []:
        lines.append(SourceLine("capped", f"{name}: the value reached the length limit and may go on"))
    for name, start in (details.get("unfinished") or {}).items():
        words = f"{name}: not finished within the token limit, so left empty; it began {start!r}"
        lines.append(SourceLine("capped", words))
    return lines


def json_text(data: dict[str, Any]) -> str:
    """A result (or any command's output) as indented JSON, non-ASCII text kept as written."""
    return json.dumps(data, ensure_ascii=False, indent=2)


def status_line(view: ResultView) -> str:
    """How the run went: `Done (finished) · strategy: whole document · 1,234 prompt tokens · ...`."""
    cached = f" ({view.cached_tokens:,} cached)" if view.cached_tokens else ""
    return " · ".join([
        f"Done ({FINISH_NAMES.get(view.finish_reason, view.finish_reason)})",
        f"strategy: {STRATEGY_NAMES.get(view.strategy, view.strategy)}",
        f"{view.prompt_tokens:,} prompt tokens{cached}",
        f"{view.generated_tokens:,} new tokens",
        f"{view.seconds:.1f} s",
    ])  # fmt: skip


def labels_table(view: ResultView) -> str:
    """A classification's labels, best first, one `probability  label` line each."""
    return "".join(f"{probability:7.2%}  {label}\n" for label, probability in view.labels)


def body_text(view: ResultView) -> str:
    """The result as the command line prints it: the labels of a classification, else the text."""
    return labels_table(view) if view.task == "classify" else view.text


def sources_text(view: ResultView) -> list[str]:
    """The sources as the command line prints them (to stderr), one bracketed line each: places in
    the documents by name and pages, checks with the text they checked."""
    lines = []
    for line in view.sources:
        if line.kind == "cited":
            lines.append(f'{line.heading}: "{" ".join((line.passage or "").split())}"')
        elif line.kind in ("source", "section"):
            lines.append(f"[{line.kind}: {line.heading}]")
        elif line.passage is not None:
            lines.append(f'[{line.heading}: "{" ".join(line.passage.split())}"]')
        else:
            lines.append(f"[{line.heading}]")
    return lines


def sources_markdown(view: ResultView) -> str:
    """The sources as Markdown: every passage, name and value shown as plain text, exactly as written."""
    plain = untrusted.plain
    entries = []
    for line in view.sources:
        if line.kind in ("cited", "source", "section"):
            entries.append(f"**{plain(line.heading)}**  \n{_blockquote(line.passage)}")
        elif line.kind == "found":
            entries.append(f"{_MARKS['found']}{plain(line.heading)}:  \n{_blockquote(line.passage)}")
        else:
            shown = line.heading if line.passage is None else f"{line.heading}: {line.passage}"
            entries.append(_MARKS[line.kind] + plain(shown))
    return "\n\n".join(entries) or "No sources for this result."


def _blockquote(text: str | None) -> str:
    return "\n".join(f"> {untrusted.plain(line)}  " for line in (text or "(empty)").splitlines())


def result_markdown(view: ResultView) -> str:
    """A finished result as a Markdown document: what was asked, the answer, the sources, the run.
    Untrusted text in it is made as safe as on the page: a Markdown viewer loads nothing from it."""
    plain = untrusted.plain
    lines = [f"# {plain(TASK_NAMES.get(view.task, view.task))}: {plain(view.document)}", ""]
    if view.request:
        lines += [f"**{REQUEST_NAMES[view.request[0]]}:** {plain(view.request[1])}", ""]
    if view.task == "classify":
        lines += [untrusted.code_block(labels_table(view).rstrip("\n"))]
    elif view.task == "extract":
        lines += [untrusted.code_block(view.text, "json")]
    else:
        lines += [untrusted.markdown(view.text)]
    lines += ["", "## Sources", "", sources_markdown(view), "", "## Run", ""]
    lines += [
        f"- model: {plain(view.model or 'unknown')}",
        f"- language: {plain(view.language or 'unknown')}",
        f"- {view.pages:,} pages",
        f"- {plain(status_line(view))}",
    ]
    return "\n".join(lines) + "\n"


def conversation_markdown(views: list[ResultView]) -> str:
    """An Ask thread as one Markdown document: each question with its answer and sources, in order
    (each result's own heading one level down), then the run of the last."""
    if not views:
        return ""
    plain = untrusted.plain
    lines = [f"# {plain(TASK_NAMES.get(views[-1].task, views[-1].task))}: {plain(views[-1].document)}", ""]
    for number, view in enumerate(views, start=1):
        question = plain(view.request[1]) if view.request else ""
        lines += [f"## {number}. {question}", "", untrusted.markdown(view.text), "", "### Sources", ""]
        lines += [sources_markdown(view), ""]
    lines += ["## Run of the last answer", "", f"- model: {plain(views[-1].model or 'unknown')}",
              f"- {plain(status_line(views[-1]))}"]  # fmt: skip
    return "\n".join(lines) + "\n"

"""What a task yields: progress notes, text deltas, and one final result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict


@dataclass(frozen=True)
class Progress:
    """A named step of a task; `step` of `total` when the step is one of a counted series
    (the parts of a map-reduce summary, the groups of a merge level)."""

    message: str
    step: int | None = None
    total: int | None = None
    expected_seconds: float | None = None  # the whole work this step starts, at the measured speeds

    @property
    def fraction(self) -> float | None:
        if self.step is None or not self.total:
            return None
        return min(1.0, max(0.0, (self.step - 1) / self.total))


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class PartDone:
    """One section of a map-reduce summary is summarized: shown while the rest is read."""

    number: int  # 1-based, of `total`
    total: int
    document: str
    pages: tuple[int, ...]  # 1-based, in order
    text: str  # the section's summary


@dataclass(frozen=True)
class DocumentSummary:
    name: str
    pages: int
    tokens: int


class PagesUsed(TypedDict):
    document: str
    pages: list[int]


class Source(TypedDict):
    """A passage the answer drew on (retrieval) or that relates to it (whole documents)."""

    document: str
    pages: list[int]
    label: str  # "report.pdf, page 3" ("..., page 3, read by OCR")
    text: str  # the passage, shortened
    score: float
    ocr: bool  # some of its pages were read by OCR: misread words are possible


class Quote(TypedDict):
    """A span the answer quotes, and the first page that holds it (None: in no document)."""

    text: str
    verified: bool
    document: str | None
    page: int | None
    ocr: bool  # found on a page read by OCR


class Citation(TypedDict):
    """A numbered marker in an answer, tied to a sentence of evidence on one page."""

    number: int  # 1-based, in order of first appearance in the answer; reused evidence keeps its number
    document: str
    page: int  # 1-based
    text: str  # the evidence: the quoted span, or a sentence as the page has it (whitespace collapsed)
    kind: str  # "quote" (a verified quote), "match" (the sentence an answer sentence restates),
    # "passage" (no answer sentence matched: the best sentence of the top passage)
    anchor: int  # where the marker goes in the answer: after the sentence it supports
    source: int | None  # index into the result's sources of the passage it came from
    ocr: bool  # the page was read by OCR
    rects: list[list[float]]  # [x0, y0, x1, y1] shares of the shown PDF page, one per line; [] if none


class Section(TypedDict):
    """A map-reduce section and its partial summary."""

    document: str
    pages: list[int]
    summary: str


class LabelScore(TypedDict):
    label: str
    probability: float
    log_likelihood: float


@dataclass(frozen=True)
class Extraction:
    schema: dict[str, Any]  # the user's schema
    data: Any  # the JSON value, valid for the schema; unfinished: the fields finished (the rest null)
    capped: list[str] | None = None  # fields cut off at the length bound (None: not checked)
    unverified: dict[str, str] | None = None  # named fields' values found in no document (set to null)
    # The field the model was writing when the token limit came (set to null): its value's start.
    unfinished: dict[str, str] | None = None


REQUEST_KEYS = {"ask": "question", "custom": "prompt"}  # the request's key in a result's JSON


@dataclass(frozen=True)
class TaskResult:
    task: str
    text: str
    strategy: str
    document: DocumentSummary
    finish_reason: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    language: str = "en"  # the output language
    pages_used: list[PagesUsed] = field(default_factory=list)  # what the model read
    empty_pages: dict[str, list[int]] = field(default_factory=dict)  # pages without text, by document
    notes: tuple[str, ...] = ()  # what the user should know (an out-of-memory retry)
    request: str | None = None  # the question (ask) or instruction (custom)
    sources: list[Source] | None = None  # None: the task has no sources (summarize, classify)
    quotes: list[Quote] | None = None
    citations: list[Citation] | None = None  # numbered evidence for the answer's sentences
    sections: list[Section] | None = None  # map-reduce summaries
    labels: list[LabelScore] | None = None  # classification, most likely first
    extraction: Extraction | None = None

    def to_json(self) -> dict[str, Any]:
        """One flat JSON object; what a task does not have is left out."""
        data: dict[str, Any] = {
            "task": self.task,
            "text": self.text,
            "strategy": self.strategy,
            "document": asdict(self.document),
            "finish_reason": self.finish_reason,
            "model": self.model,
            "usage": dict(self.usage),
            "timings": dict(self.timings),
            "language": self.language,
            "pages_used": list(self.pages_used),
        }
        if self.empty_pages:
            data["empty_pages"] = self.empty_pages
        if self.notes:
            data["notes"] = list(self.notes)
        if self.request is not None:
            data[REQUEST_KEYS[self.task]] = self.request
        optional = {"sources": self.sources, "quotes": self.quotes, "citations": self.citations,
                    "sections": self.sections, "labels": self.labels}  # fmt: skip
        data |= {key: value for key, value in optional.items() if value is not None}
        if self.extraction is not None:
            data |= {key: value for key, value in asdict(self.extraction).items() if value is not None or key == "data"}
        return data


Event = Progress | TextDelta | PartDone | TaskResult

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

    @property
    def fraction(self) -> float | None:
        if self.step is None or not self.total:
            return None
        return min(1.0, max(0.0, (self.step - 1) / self.total))


@dataclass(frozen=True)
class TextDelta:
    text: str


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
    data: Any  # the JSON value, valid for the schema; None when the model did not finish it
    capped: list[str] | None = None  # fields cut off at the length bound (None: not checked)
    unverified: dict[str, str] | None = None  # named fields' values found in no document (set to null)


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
        optional = {"sources": self.sources, "quotes": self.quotes, "sections": self.sections, "labels": self.labels}
        data |= {key: value for key, value in optional.items() if value is not None}
        if self.extraction is not None:
            data |= {key: value for key, value in asdict(self.extraction).items() if value is not None or key == "data"}
        return data


Event = Progress | TextDelta | TaskResult

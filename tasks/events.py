"""What a task yields: progress notes, text deltas, and one final result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data


Event = Progress | TextDelta | TaskResult

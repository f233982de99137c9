"""What a task yields: progress notes, text deltas, and one final result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    message: str


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

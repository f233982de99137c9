"""What every engine (in process or remote) yields and measures: stream chunks and speeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from model.speed_store import SpeedStore

# "repetition" and "empty" are the tasks' verdicts on a finished generation (tasks/endings.py):
# an engine itself ends with one of the first four.
FinishReason = Literal["stop", "length", "cancelled", "time_limit", "repetition", "empty"]
CALIBRATION_PROMPT = "The committee reviewed the budget and approved it. " * 12  # measures a first speed
# Below this, sampling is greedy decoding anyway (the distribution is a point mass), while dividing
# the logits by it overflows them to inf and the probabilities to nan.
GREEDY_BELOW = 1e-3


@dataclass(frozen=True)
class GenerationChunk:
    """One step of a stream: new text, and on the last chunk the finish reason and counts."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    cached_tokens: int = 0  # prompt tokens whose prefill came from the prefix cache
    notes: tuple[str, ...] = ()  # what the user should know (an out-of-memory retry); all of them on the last chunk

    @property
    def decode_tokens_per_second(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


@dataclass
class Speeds:
    """Running averages of the measured prefill and decode speeds (tokens per second), kept in
    `store` (model/speed_store.py) between runs when there is one: a new process then knows
    them without a calibration generation first."""

    prefill: float | None = None
    decode: float | None = None
    store: SpeedStore | None = None

    def __post_init__(self) -> None:
        if self.store is not None and (known := self.store.load()) is not None:
            self.prefill, self.decode = known

    def record(self, prefilled: int, prefill_seconds: float, decoded: int, decode_seconds: float) -> None:
        # A short prefill (a follow-up question on a cached document) runs below the speed of a
        # long one, which is what a wait is estimated for: it counts only when nothing else is known.
        if prefill_seconds > 0 and (prefilled >= MIN_PREFILL_MEASURED or (prefilled >= 32 and not self.prefill)):
            self.prefill = _average(self.prefill, prefilled / prefill_seconds)
        if decoded >= 4 and decode_seconds > 0:
            self.decode = _average(self.decode, decoded / decode_seconds)
        if self.store is not None and self.measured():
            self.store.save(self.prefill, self.decode)

    def measured(self) -> bool:
        return self.prefill is not None and self.decode is not None

    def or_slow(self) -> tuple[float, float]:
        """The speeds, assuming slow where nothing was measured (a calibration that ended at once)."""
        return self.prefill or 50.0, self.decode or 4.0


MIN_PREFILL_MEASURED = 256


def sampling_temperature(temperature: float) -> float:
    """The temperature both engines sample with: 0.0 (greedy) below GREEDY_BELOW, so that a tiny
    value such as 1e-300 never reaches a division (nor a server that does the same); nan is
    greedy too (TaskOptions.validate refuses it before a task gets here)."""
    return temperature if temperature >= GREEDY_BELOW else 0.0


def _average(previous: float | None, latest: float) -> float:
    return latest if previous is None else 0.7 * previous + 0.3 * latest


def join_stream(chunks: Iterable[GenerationChunk]) -> GenerationChunk:
    """Run a stream to the end; the last chunk with the whole text."""
    parts: list[str] = []
    last = GenerationChunk("")
    for last in chunks:
        parts.append(last.text)
    return dataclasses.replace(last, text="".join(parts))

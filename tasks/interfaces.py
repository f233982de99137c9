"""The small interface through which tasks reach a model, so they run on the in-process engine, a
scripted fake in tests, or a remote server alike: what an engine offers, what its stream yields,
and the errors it raises for a request it cannot serve (defined beside the engines, in
model/errors.py, which imports nothing heavy)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

from model.errors import EngineError, EngineUnavailable, OutOfMemory, RequestRefused
from model.generation import FinishReason, GenerationChunk

__all__ = [
    "EngineError",
    "EngineUnavailable",
    "FinishReason",
    "GenerationChunk",
    "OutOfMemory",
    "RequestRefused",
    "TextEngine",
    "TokenCounter",
]


class TokenCounter(Protocol):
    """Counts tokens with the model's tokenizer; knows where the model runs and its context."""

    @property
    def is_remote(self) -> bool:
        """The model runs on a server (the openai backend), not in this process."""
        ...

    @property
    def on_cpu(self) -> bool:
        """The model runs on this machine's CPU, where a long prefill takes minutes."""
        ...

    @property
    def context_limit(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...


class TextEngine(TokenCounter, Protocol):
    """Streams generated text, scores continuations, and reports its speed. Every method raises
    EngineUnavailable, RequestRefused or OutOfMemory (model/errors.py, messages for the user)
    for a request it cannot serve; anything else it raises is a bug."""

    @property
    def model_name(self) -> str: ...

    def memory_token_limit(self) -> int | None:
        """How many tokens of KV cache fit in the device's free memory (None: not limiting)."""
        ...

    @property
    def chat_frame(self) -> tuple[str, str] | None:
        """The model's chat template around one user message, (before, after) with the assistant's
        turn opened; None for a model without one (a base model reads completion prompts)."""
        ...

    def throughput(self) -> tuple[float, float]:
        """(prefill tokens/s, decode tokens/s) as measured on this engine."""
        ...

    def stream(
        self,
        prompt: str,
        *,
        prefix: str = "",
        max_new_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
        deadline: float | None = None,
        json_schema: dict | None = None,
        cache_salt: str | None = None,
    ) -> Iterator[GenerationChunk]:
        """Chunks of new text; the last one has the finish reason, the token counts, the
        timings and the notes the user should see (an out-of-memory retry). The stream stops
        early ('cancelled', 'time_limit') when `cancel` is set or time.monotonic() passes
        `deadline`. The engine may keep the prefilled `prefix` for later requests with the same
        `cache_salt` (one per session; None on the command line), never for others."""
        ...

    def score(
        self, prompt: str, continuations: Sequence[str], *, prefix: str = "", cache_salt: str | None = None
    ) -> list[float]:
        """The log-likelihood of each continuation after `prefix + prompt`."""
        ...

"""The small interface through which tasks reach a model, so they run on the in-process engine, a
scripted fake in tests, or a remote server alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol


class TokenCounter(Protocol):
    """Counts tokens with the model's tokenizer; knows the device and the model's context."""

    @property
    def device(self) -> str: ...

    @property
    def context_limit(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...


class TextEngine(TokenCounter, Protocol):
    """Streams generated text, scores continuations, and reports its speed."""

    @property
    def model_name(self) -> str: ...

    def memory_token_limit(self) -> int | None:
        """How many tokens of KV cache fit in the device's free memory (None: not limiting)."""
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
    ) -> Iterator[Any]:
        """Chunks with .text and, on the last one, .finish_reason, .prompt_tokens,
        .generated_tokens, .prefill_seconds, .decode_seconds, .cached_tokens. The stream stops
        early ('cancelled', 'time_limit') when `cancel` is set or time.monotonic() passes
        `deadline`. The engine may keep the prefilled `prefix` for later requests with the same
        `cache_salt` (one per session; None on the command line), never for others. Raises
        MemoryError (with a message for the user) when the device runs out of memory for the
        request."""
        ...

    def score(
        self, prompt: str, continuations: Sequence[str], *, prefix: str = "", cache_salt: str | None = None
    ) -> list[float]: ...

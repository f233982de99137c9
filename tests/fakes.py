"""A scripted engine for testing task logic without a model. It records every prompt it gets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from model.generation import GenerationChunk


@dataclass
class FakeEngine:
    """Counts one token per whitespace-separated word and streams `reply` word by word."""

    reply: str = "A short scripted answer."
    is_remote: bool = False
    on_cpu: bool = True
    context_limit: int = 131072
    model_name: str = "fake"
    chat_frame: tuple[str, str] | None = None  # a base model's completion prompts
    prompts: list[str] = field(default_factory=list)
    salts: list[str | None] = field(default_factory=list)  # the cache salt of every request

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def memory_token_limit(self) -> int | None:
        return None

    def throughput(self) -> tuple[float, float]:
        return 100.0, 10.0

    def stream(self, prompt: str, *, prefix: str = "", max_new_tokens: int, stop: Sequence[str] = (),
               temperature: float = 0.0, cancel=None, deadline=None, json_schema=None,
               cache_salt: str | None = None) -> Iterator[GenerationChunk]:  # fmt: skip
        self.prompts.append(prefix + prompt)
        self.salts.append(cache_salt)
        words = self.reply.split(" ")[:max_new_tokens]
        for index, word in enumerate(words):
            yield GenerationChunk(word if index == 0 else " " + word)
        reason = "length" if len(words) < len(self.reply.split(" ")) else "stop"
        yield GenerationChunk("", reason, self.count_tokens(prefix + prompt), len(words), 0.01, 0.02, 0)

    def score(self, prompt: str, continuations: Sequence[str], *, prefix: str = "",
              cache_salt: str | None = None) -> list[float]:  # fmt: skip
        self.prompts.append(prefix + prompt)
        self.salts.append(cache_salt)
        return [-float(len(text)) for text in continuations]

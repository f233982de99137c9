"""The generation engine: token counting and streamed generation with stop strings and cancel.

Generation is layered as in mlx-lm: `_token_steps` yields token ids (prefill, then one decode
step at a time), `stream` turns them into text deltas and stops, `generate` joins a stream.
Everything runs in the caller's thread, so an exception inside the model reaches the caller
directly and there is no worker thread that could be left waiting. Each model call enters its
own `torch.inference_mode()` because a generator may be resumed from a different thread (Gradio
does this), and grad mode is per thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import DynamicCache

from model.loader import LoadedModel, LoadReport
from model.textstream import IncrementalDecoder, StopStringFilter

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class GenerationChunk:
    """One step of a stream: new text, and on the last chunk the finish reason and counts."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


class Engine:
    """Streams text from a loaded causal LM. Holds no global state; one per loaded model."""

    def __init__(self, loaded: LoadedModel):
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.report: LoadReport = loaded.report
        self._eos_ids = _eos_token_ids(loaded.model, loaded.tokenizer)

    @property
    def model_name(self) -> str:
        return self.report.model_id

    @property
    def device(self) -> str:
        return self.report.device

    @property
    def context_limit(self) -> int:
        return self.report.context_limit

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def stream(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 512,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
        seed: int | None = None,
    ) -> Iterator[GenerationChunk]:
        """Yield text deltas; the last chunk has `finish_reason` 'stop', 'length' or 'cancelled'."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        prompt_ids = self.encode(prompt)
        if len(prompt_ids) + max_new_tokens > self.context_limit:
            raise ValueError(
                f"the prompt ({len(prompt_ids):,} tokens) plus {max_new_tokens:,} new tokens exceeds the "
                f"model's context limit of {self.context_limit:,} tokens"
            )
        decoder = IncrementalDecoder(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True))
        stops = StopStringFilter(stop)
        steps = self._token_steps(prompt_ids, temperature, seed)
        started = time.perf_counter()
        first_token_at = started
        count, reason = 0, "length"
        while count < max_new_tokens:
            if cancel is not None and cancel.is_set():
                reason = "cancelled"
                break
            token = next(steps)
            if count == 0:
                first_token_at = time.perf_counter()
            count += 1
            if token in self._eos_ids:
                reason = "stop"
                break
            text = stops.push(decoder.push(token))
            if stops.stopped:
                reason = "stop"
            if text:
                yield GenerationChunk(text)
            if stops.stopped:
                break
        steps.close()
        tail = "" if stops.stopped else stops.push(decoder.flush())
        tail += stops.flush()
        yield GenerationChunk(
            text=tail,
            finish_reason="stop" if stops.stopped else reason,
            prompt_tokens=len(prompt_ids),
            generated_tokens=count,
            prefill_seconds=first_token_at - started,
            decode_seconds=time.perf_counter() - first_token_at,
        )

    def generate(self, prompt: str, **options: Any) -> GenerationChunk:
        """Run `stream` to the end and return one chunk with the whole text."""
        parts: list[str] = []
        last = GenerationChunk("")
        for last in self.stream(prompt, **options):
            parts.append(last.text)
        return GenerationChunk(
            "".join(parts),
            last.finish_reason,
            last.prompt_tokens,
            last.generated_tokens,
            last.prefill_seconds,
            last.decode_seconds,
        )

    def _token_steps(self, prompt_ids: list[int], temperature: float, seed: int | None) -> Iterator[int]:
        """Prefill the prompt, then yield one sampled token per step, forever (the caller stops)."""
        device = self.model.device
        cache = DynamicCache(config=self.model.config)
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        logits = self._forward(torch.tensor([prompt_ids], device=device), cache)  # (1, vocab)
        while True:
            token = _pick_token(logits, temperature, generator)
            yield token
            logits = self._forward(torch.tensor([[token]], device=device), cache)

    def _forward(self, input_ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """Run the model on `input_ids` (1, n) with `cache`; return the last position's logits."""
        with torch.inference_mode():
            out = self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float()


def _pick_token(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
    if temperature <= 0:
        return int(logits.argmax(dim=-1).item())
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, num_samples=1, generator=generator).item())


def _eos_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return frozenset(ids)

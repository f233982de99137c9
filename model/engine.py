"""The generation engine: token counting, streamed generation, log-likelihood scoring.

Generation is layered as in mlx-lm: `_prefilled` gives a KV cache holding the prompt (the
document prefix from the prefix cache when it was seen before, the rest prefilled in fixed-size
chunks so peak memory stays bounded), `_token_steps` yields token ids one decode step at a time,
`stream` turns them into text deltas and stops, `generate` joins a stream.

Everything runs in the caller's thread, so an exception inside the model reaches the caller
directly and there is no worker thread that could be left waiting. Each model call enters its
own `torch.inference_mode()` because a generator may be resumed from a different thread (Gradio
does this), and grad mode is per thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import DynamicCache

from model.constraints import JsonGrammars, JsonSchemaConstraint
from model.fastpath import FastPath
from model.kvcache import (
    PREFIX_SLACK,
    CachedPrefix,
    PrefixCache,
    cache_nbytes,
    crop_to,
    holds_prefix,
    new_cache,
    reserve_room,
)
from model.loader import LoadedModel, LoadReport
from model.textstream import IncrementalDecoder, StopStringFilter

FinishReason = Literal["stop", "length", "cancelled"]
DEFAULT_PREFILL_CHUNK = 2048  # bounds peak memory; smaller chunks cost speed (1024: -5-8% here)
DEFAULT_PREFIX_CACHE_BYTES = 2 * 2**30


class Cancelled(Exception):
    """The cancel event was set while the prompt was being read."""


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

    @property
    def decode_tokens_per_second(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


@dataclass
class _Prefilled:
    cache: DynamicCache
    logits: torch.Tensor  # (1, vocab): the next-token logits after the whole prompt
    length: int  # prompt tokens in the cache
    cached_tokens: int


class Engine:
    """Streams text from a loaded causal LM. Holds no global state; one per loaded model."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
    ):
        if prefill_chunk < 1:
            raise ValueError("prefill_chunk must be at least 1")
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.report: LoadReport = loaded.report
        self.prefill_chunk = prefill_chunk
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self._eos_ids = _eos_token_ids(loaded.model, loaded.tokenizer)
        self._grammars = JsonGrammars(loaded.tokenizer, loaded.model.config.vocab_size)
        self._speeds = _Speeds()
        self._fast_path = FastPath(loaded.model)

    @property
    def model_name(self) -> str:
        return self.report.model_id

    @property
    def device(self) -> str:
        return self.report.device

    @property
    def context_limit(self) -> int:
        return self.report.context_limit

    def memory_token_limit(self) -> int | None:
        """How many tokens of KV cache fit in the GPU's free memory now (None on the CPU, where
        time rather than memory sets the budget). A fifth stays free for activations. Cached
        document prefixes count as used: nothing evicts them to make room for a prefill."""
        if self.device != "cuda":
            return None
        free, _total = torch.cuda.mem_get_info(self.model.device)
        return int(free * 0.8 / self.kv_bytes_per_token)

    @property
    def kv_bytes_per_token(self) -> int:
        config = self.model.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        return 2 * config.num_hidden_layers * kv_heads * head_dim * self.model.dtype.itemsize

    def throughput(self) -> tuple[float, float]:
        """(prefill, decode) tokens per second as measured here; a short run measures them once
        when nothing has been measured yet."""
        if self._speeds.prefill is None or self._speeds.decode is None:
            self.generate("The committee reviewed the budget and approved it. " * 12, max_new_tokens=8)
        # A calibration that ended early (end of text at once) leaves a gap: assume slow.
        return self._speeds.prefill or 50.0, self._speeds.decode or 4.0

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def stream(
        self,
        prompt: str,
        *,
        prefix: str = "",
        max_new_tokens: int = 512,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
        seed: int | None = None,
        json_schema: dict | None = None,
    ) -> Iterator[GenerationChunk]:
        """Yield text deltas for `prefix + prompt`; the last chunk has `finish_reason` 'stop',
        'length' or 'cancelled'. A `prefix` (the document part) is prefilled once and reused.
        With `json_schema`, the output is JSON valid for it (stop strings do not apply)."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        constraint = self._grammars.constraint(json_schema) if json_schema is not None else None
        started = time.perf_counter()
        try:
            with self._prefilled(prompt, prefix, cancel, reserve=max_new_tokens) as state:
                first_token_at = time.perf_counter()
                yield from self._decode(
                    state,
                    max_new_tokens,
                    () if constraint else stop,
                    temperature,
                    cancel,
                    seed,
                    constraint,
                    started,
                    first_token_at,
                )
        except Cancelled:
            yield GenerationChunk("", "cancelled", prefill_seconds=time.perf_counter() - started)

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
            last.cached_tokens,
        )

    def score(self, prompt: str, continuations: Sequence[str], *, prefix: str = "") -> list[float]:
        """The log-likelihood of each continuation after `prefix + prompt` (sum over its tokens)."""
        scores = []
        with self._prefilled(prompt, prefix, None, reserve=0) as state:
            first_logprobs = torch.log_softmax(state.logits, dim=-1)[0]
            for text in continuations:
                ids = list(self.tokenizer.encode(text, add_special_tokens=False))
                if not ids:
                    raise ValueError(f"the continuation {text!r} has no tokens")
                total = float(first_logprobs[ids[0]])
                if len(ids) > 1:
                    logits = self._forward(torch.tensor([ids[:-1]], device=self.model.device), state.cache, keep=0)
                    logprobs = torch.log_softmax(logits[0].float(), dim=-1)  # (len(ids)-1, vocab)
                    total += float(logprobs.gather(1, torch.tensor(ids[1:], device=logprobs.device)[:, None]).sum())
                    crop_to(state.cache, state.length)
                scores.append(total)
        return scores

    def _decode(self, state, max_new_tokens, stop, temperature, cancel, seed, constraint, started, first_token_at):
        decoder = IncrementalDecoder(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True))
        stops = StopStringFilter(stop)
        steps = self._token_steps(state, temperature, seed, constraint)
        count, reason = 0, "length"
        while count < max_new_tokens:
            if cancel is not None and cancel.is_set():
                reason = "cancelled"
                break
            token = next(steps)
            count += 1
            if token in self._eos_ids and (constraint is None or constraint.finished):
                reason = "stop"
                break
            text = stops.push(decoder.push(token))
            if stops.stopped or (constraint is not None and constraint.finished):
                reason = "stop"
            if text:
                yield GenerationChunk(text)
            if reason == "stop":
                break
        steps.close()
        decode_seconds = time.perf_counter() - first_token_at
        self._speeds.record(state.length - state.cached_tokens, first_token_at - started, count, decode_seconds)
        tail = "" if stops.stopped else stops.push(decoder.flush())
        yield GenerationChunk(
            text=tail + stops.flush(),
            finish_reason="stop" if stops.stopped else reason,
            prompt_tokens=state.length,
            generated_tokens=count,
            prefill_seconds=first_token_at - started,
            decode_seconds=decode_seconds,
            cached_tokens=state.cached_tokens,
        )

    @contextmanager
    def _prefilled(self, prompt: str, prefix: str, cancel: threading.Event | None, reserve: int):
        """A KV cache holding `prefix + prompt`, the prefix (and the part of the prompt a previous
        request on it shared) taken from the prefix cache when it is there. On exit the prefix
        and this prompt go back into the prefix cache, if the prefix was prefilled whole."""
        key = PrefixCache.key(prefix) if prefix else ""
        entry = self.prefix_cache.take(key) if prefix else None
        rest = list(self.tokenizer.encode(prompt, add_special_tokens=not prefix))
        cached_tokens = 0
        if entry is not None:
            entry.tail = rest[: entry.reusable(rest)]  # what the cache still holds after cropping
            crop_to(entry.cache, entry.length)
            cached_tokens = entry.length
            rest = rest[len(entry.tail) :]
        elif prefix:
            ids = self.encode(prefix)
            room = len(ids) + len(rest) + reserve + PREFIX_SLACK  # later questions fit without a copy
            entry = CachedPrefix(ids, new_cache(self.model.config, room), 0)
        try:
            total = (entry.length if entry else 0) + len(rest)
            if total == 0:
                raise ValueError("there is nothing to read: the prompt is empty")
            if total + reserve > self.context_limit:
                raise ValueError(
                    f"the prompt ({total:,} tokens) plus {reserve:,} new tokens exceeds the "
                    f"model's context limit of {self.context_limit:,} tokens"
                )
            cache = entry.cache if entry else new_cache(self.model.config, total + reserve)
            reserve_room(cache, total + reserve)
            if entry is not None and not cached_tokens:
                self._prefill(entry.ids, cache, cancel)
                entry.nbytes = cache_nbytes(cache)
            logits = self._prefill(rest, cache, cancel) if rest else self._forward_last_token(entry, cache)
            if entry is not None:
                entry.tail += rest  # now in the cache too
            yield _Prefilled(cache, logits, total, cached_tokens)
        finally:
            if entry is not None and entry.nbytes and holds_prefix(entry.cache, entry.length):
                self.prefix_cache.give_back(key, entry)

    def _forward_last_token(self, entry: CachedPrefix, cache: DynamicCache) -> torch.Tensor:
        """Logits after a prompt that is all prefix: drop the last cached position, feed it again."""
        crop_to(cache, len(entry.ids) - 1)
        return self._forward(torch.tensor([entry.ids[-1:]], device=self.model.device), cache, keep=1)[:, -1, :].float()

    def _prefill(self, ids: list[int], cache: DynamicCache, cancel: threading.Event | None) -> torch.Tensor:
        """Feed `ids` into `cache` in chunks of `prefill_chunk` tokens; return the last logits."""
        logits = None
        for start in range(0, len(ids), self.prefill_chunk):
            if cancel is not None and cancel.is_set():
                raise Cancelled
            chunk = torch.tensor([ids[start : start + self.prefill_chunk]], device=self.model.device)
            logits = self._forward(chunk, cache, keep=1)[:, -1, :]
        return logits.float() if logits is not None else None

    def _token_steps(
        self, state: _Prefilled, temperature: float, seed: int | None, constraint: JsonSchemaConstraint | None
    ) -> Iterator[int]:
        """Yield one sampled token per step, forever (the caller stops)."""
        device = self.model.device
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        logits = state.logits.clone()
        while True:
            if constraint is not None:
                constraint.mask(logits)
            token = _pick_token(logits, temperature, generator)
            if constraint is not None:
                constraint.accept(token)
            yield token
            logits = self._forward(torch.tensor([[token]], device=device), state.cache, keep=1)[:, -1, :].float()

    def _forward(self, input_ids: torch.Tensor, cache: DynamicCache, keep: int) -> torch.Tensor:
        """Run the model on `input_ids` (1, n) with `cache`; logits of the last `keep` positions
        (all of them when keep is 0): (1, keep or n, vocab)."""
        with torch.inference_mode(), self._fast_path:
            return self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=keep).logits


@dataclass
class _Speeds:
    """Running averages of the measured prefill and decode speeds (tokens per second)."""

    prefill: float | None = None
    decode: float | None = None

    def record(self, prefilled: int, prefill_seconds: float, decoded: int, decode_seconds: float) -> None:
        if prefilled >= 32 and prefill_seconds > 0:
            self.prefill = _average(self.prefill, prefilled / prefill_seconds)
        if decoded >= 4 and decode_seconds > 0:
            self.decode = _average(self.decode, decoded / decode_seconds)


def _average(previous: float | None, latest: float) -> float:
    return latest if previous is None else 0.7 * previous + 0.3 * latest


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

"""The generation engine: token counting, streamed generation, log-likelihood scoring.

Generation is layered as in mlx-lm: `_prefilled` gives a KV cache holding the prompt (the
document prefix from the prefix cache when it was seen before, the rest prefilled in fixed-size
chunks so peak memory stays bounded), `_token_steps` yields token ids one decode step at a time,
`stream` turns them into text deltas and stops, `generate` joins a stream.

The model's work (prefill chunks, decode steps, sampling) runs on the process's one compute
thread (model/compute.py: one pool of CPU worker threads however many threads call the engine);
the caller's thread waits for each step, so an exception inside the model reaches the caller
directly. Each model call enters its own `torch.inference_mode()`: grad mode is per thread.

A request stops between tokens and prefill chunks when its cancel event is set or its deadline
passes. When the GPU runs out of memory, the prefill goes on in smaller chunks; when even the
smallest fail, the request ends with `GpuOutOfMemory` (a message for the user) and the engine
stays usable (see model/request_state.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from model import compute
from model.constraints import JsonGrammars, JsonSchemaConstraint
from model.errors import RequestRefused
from model.generation import CALIBRATION_PROMPT, GenerationChunk, Speeds, join_stream
from model.kvcache import PREFIX_SLACK, CachedPrefix, KVCache, PrefixCache, StockCache, kv_bytes_per_token
from model.loader import LoadedModel, LoadReport
from model.request_state import (
    Cancelled,
    RequestState,
    is_out_of_memory,
    release_memory,
    reraise_unless_out_of_memory,
)
from model.sampling import end_of_text_ids, pick_token
from model.speed_store import SpeedStore, store_for
from model.stock import runner_for
from model.textstream import IncrementalDecoder, StopStringFilter
from model.tokens import chat_frame, count_tokens

DEFAULT_PREFILL_CHUNK = 2048  # bounds peak memory; smaller chunks cost speed (README, "Measured limits")
MIN_PREFILL_CHUNK = 256  # out-of-memory retries halve the chunk down to this, then give up
DEFAULT_PREFIX_CACHE_BYTES = 2 * 2**30

logger = logging.getLogger(__name__)


@dataclass
class _Prefilled:
    cache: KVCache | StockCache
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
        min_prefill_chunk: int = MIN_PREFILL_CHUNK,
        speed_store: SpeedStore | None = None,
    ):
        if prefill_chunk < 1 or min_prefill_chunk < 1:
            raise ValueError("prefill_chunk and min_prefill_chunk must be at least 1")
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.report: LoadReport = loaded.report
        self.prefill_chunk = prefill_chunk
        self.min_prefill_chunk = min_prefill_chunk
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self._eos_ids = end_of_text_ids(loaded.model, loaded.tokenizer)
        self._grammars = JsonGrammars(loaded.tokenizer, loaded.model.config.vocab_size)
        report = loaded.report  # the speeds earlier runs of this setup measured (model/speed_store.py)
        device = torch.cuda.get_device_name(self.model.device) if report.device == "cuda" else report.device
        setup = (report.model_id, f"{report.parameters:,} parameters", device, report.dtype, report.quantization)
        self._speeds = Speeds(store=speed_store or store_for(*setup))
        self._runner = runner_for(loaded.model, report.device)  # ours, or transformers' forward (model/stock.py)

    @property
    def model_name(self) -> str:
        return self.report.model_id

    @property
    def device(self) -> str:
        return self.report.device

    @property
    def is_remote(self) -> bool:
        return False

    @property
    def on_cpu(self) -> bool:
        return self.device == "cpu"

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
        return kv_bytes_per_token(self.model.config, self.model.dtype)

    def throughput(self) -> tuple[float, float]:
        """(prefill, decode) tokens per second as measured here; a short run measures them once
        when nothing has been measured yet."""
        if not self._speeds.measured():
            self.generate(CALIBRATION_PROMPT, max_new_tokens=8)
        return self._speeds.or_slow()

    @cached_property
    def chat_frame(self) -> tuple[str, str] | None:
        """What the model's chat template puts around a user message (None: completion prompts)."""
        return chat_frame(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)  # in slices when long: bounded memory

    def stream(
        self,
        prompt: str,
        *,
        prefix: str = "",
        max_new_tokens: int = 512,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
        deadline: float | None = None,
        seed: int | None = None,
        json_schema: dict | None = None,
        cache_salt: str | None = None,
    ) -> Iterator[GenerationChunk]:
        """Yield text deltas for `prefix + prompt`; the last chunk has `finish_reason` 'stop',
        'length', 'cancelled' (the `cancel` event was set) or 'time_limit' (`time.monotonic()`
        passed `deadline`), and keeps the text so far. A `prefix` (the document part) is prefilled
        once and reused by later requests with the same `cache_salt` (never by others). With
        `json_schema`, the output is JSON valid for it (stop strings do not apply). Raises
        GpuOutOfMemory when the GPU runs out of memory even in the smallest chunks."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        steps = self._stream(prompt, prefix, max_new_tokens, stop, temperature, cancel, deadline, seed, json_schema,
                             cache_salt)  # fmt: skip
        yield from compute.steps(steps)

    def _stream(self, prompt, prefix, max_new_tokens, stop, temperature, cancel, deadline, seed, json_schema,
                cache_salt):  # fmt: skip
        constraint = self._grammars.constraint(json_schema, cache_salt) if json_schema is not None else None
        request = RequestState(cancel, deadline, self.prefill_chunk, cache_salt)
        started = time.perf_counter()
        stop = () if constraint else stop
        try:
            yield from self._answer(prompt, prefix, request, max_new_tokens, stop, temperature, seed, constraint)
            return
        except Cancelled as stopped:
            prefill_seconds = time.perf_counter() - started
            yield GenerationChunk("", stopped.reason, prefill_seconds=prefill_seconds, notes=tuple(request.notes))
            return
        except Exception as exc:
            reraise_unless_out_of_memory(exc, request, "on")
        # Out of the handler, the error no longer holds this request's cache, so its memory can go.
        release_memory()
        raise request.out_of_memory()

    def _answer(self, prompt, prefix, request, max_new_tokens, stop, temperature, seed, constraint):
        """Prefill, then decode; the cache lives in this frame only, so it is gone when this ends."""
        started = time.perf_counter()
        with self._prefilled(prompt, prefix, request, reserve=max_new_tokens) as state:
            if request.notes:  # said at once, before the answer: the prefill took longer than it might have
                yield GenerationChunk("", notes=tuple(request.notes))
            yield from self._decode(state, request, max_new_tokens, stop, temperature, seed, constraint, started)

    def generate(self, prompt: str, **options: Any) -> GenerationChunk:
        """Run `stream` to the end and return one chunk with the whole text."""
        return join_stream(self.stream(prompt, **options))

    def score(
        self, prompt: str, continuations: Sequence[str], *, prefix: str = "", cache_salt: str | None = None
    ) -> list[float]:
        """The log-likelihood of each continuation after `prefix + prompt` (sum over its tokens).
        The prefix cache is used as `stream` uses it. Raises GpuOutOfMemory as `stream` does."""
        request = RequestState(None, None, self.prefill_chunk, cache_salt)
        try:
            return compute.run(self._score, prompt, continuations, prefix, request)
        except Exception as exc:
            reraise_unless_out_of_memory(exc, request, "scoring")
        release_memory()
        raise request.out_of_memory()

    def decode_step_logits(self, prompt: str) -> torch.Tensor:
        """The next-token logits (vocab,) after `prompt`, its last token fed alone, as generation
        feeds each new token. Decode runs other kernels (and, with --quant int8, other weights)
        than prefill, so this is what a comparison of decode numerics needs. No cache is kept."""
        ids = self.encode(prompt)
        if len(ids) < 2:
            raise ValueError("decode_step_logits needs a prompt of at least two tokens")
        return compute.run(self._decode_step_logits, ids)

    def _decode_step_logits(self, ids: list[int]) -> torch.Tensor:
        request = RequestState(None, None, self.prefill_chunk)
        cache = self._runner.new_cache(len(ids))
        self._prefill(ids[:-1], cache, request)
        last = torch.tensor([ids[-1:]], device=self.model.device)
        return self._forward(last, cache, keep=1)[0, -1].float()

    def _score(self, prompt: str, continuations: Sequence[str], prefix: str, request: RequestState) -> list[float]:
        scores = []
        with self._prefilled(prompt, prefix, request, reserve=0) as state:
            first_logprobs = torch.log_softmax(state.logits, dim=-1)[0]
            for text in continuations:
                ids = list(self.tokenizer.encode(text, add_special_tokens=False))
                if not ids:
                    raise RequestRefused(f"the continuation {text!r} has no tokens")
                total = float(first_logprobs[ids[0]])
                if len(ids) > 1:
                    logits = self._forward(torch.tensor([ids[:-1]], device=self.model.device), state.cache, keep=0)
                    logprobs = torch.log_softmax(logits[0].float(), dim=-1)  # (len(ids)-1, vocab)
                    total += float(logprobs.gather(1, torch.tensor(ids[1:], device=logprobs.device)[:, None]).sum())
                    state.cache.crop(state.length)
                scores.append(total)
        return scores

    def _decode(self, state, request, max_new_tokens, stop, temperature, seed, constraint, started):
        first_token_at = time.perf_counter()
        decoder = IncrementalDecoder(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True))
        stops = StopStringFilter(stop)
        steps = self._token_steps(state, request, temperature, seed, constraint)
        count, reason = 0, "length"
        while count < max_new_tokens:
            if (stopped := request.stop_reason()) is not None:
                reason = stopped
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
            notes=tuple(request.notes),
        )

    @contextmanager
    def _prefilled(self, prompt: str, prefix: str, request: RequestState | None, reserve: int):
        """A KV cache holding `prefix + prompt`, the prefix (and the part of the prompt a previous
        request on it shared) taken from the prefix cache when it is there. On exit the prefix
        and this prompt go back into the prefix cache, if the prefix was prefilled whole and the
        request did not run out of memory (then the memory matters more than the cache). Only
        entries of the request's own cache salt are seen or stored."""
        request = request or RequestState(None, None, self.prefill_chunk)
        key = PrefixCache.key(prefix, request.salt) if prefix else ""
        entry = self.prefix_cache.take(key) if prefix else None
        rest = list(self.tokenizer.encode(prompt, add_special_tokens=not prefix))
        cached_tokens = 0
        if entry is not None:
            entry.tail = rest[: entry.reusable(rest)]  # what the cache still holds after cropping
            entry.cache.crop(entry.length)
            cached_tokens = entry.length
            rest = rest[len(entry.tail) :]
        elif prefix:
            ids = self.encode(prefix)
            room = len(ids) + len(rest) + reserve + PREFIX_SLACK  # later questions fit without a copy
            entry = CachedPrefix(ids, self._runner.new_cache(room), 0)
        try:
            total = request.tokens = (entry.length if entry else 0) + len(rest)
            if total == 0:
                raise RequestRefused("there is nothing to read: the prompt is empty")
            if total + reserve > self.context_limit:
                raise RequestRefused(
                    f"the prompt ({total:,} tokens) plus {reserve:,} new tokens exceeds the "
                    f"model's context limit of {self.context_limit:,} tokens"
                )
            cache = entry.cache if entry else self._runner.new_cache(total + reserve)
            cache.reserve(total + reserve)
            if entry is not None and not cached_tokens:  # a new document: it and the prompt in one pass
                logits = self._prefill(entry.ids + rest, cache, request)  # (the prompt's few tokens alone
                entry.nbytes = cache.nbytes  # would read every expert's weights once more)
            elif rest:
                logits = self._prefill(rest, cache, request)
            else:
                logits = self._forward_last_token(entry, cache)
            if entry is not None:
                entry.tail += rest  # now in the cache too
            yield _Prefilled(cache, logits, total, cached_tokens)
        except Exception as exc:
            if is_out_of_memory(exc):
                entry = None
            raise
        finally:
            if entry is not None and entry.nbytes and entry.cache.holds(entry.length):
                self.prefix_cache.give_back(key, entry)

    def _forward_last_token(self, entry: CachedPrefix, cache: KVCache | StockCache) -> torch.Tensor:
        """Logits after a prompt that is all prefix: drop the last cached position, feed it again."""
        cache.crop(len(entry.ids) - 1)
        return self._forward(torch.tensor([entry.ids[-1:]], device=self.model.device), cache, keep=1)[:, -1, :].float()

    def _prefill(self, ids: list[int], cache: KVCache | StockCache, request: RequestState) -> torch.Tensor:
        """Feed `ids` into `cache` in chunks of `request.chunk` tokens; return the last logits. A chunk
        that runs out of memory is cut from the cache and read again in chunks half the size."""
        start, base, logits = 0, cache.length, None
        while start < len(ids):
            if (reason := request.stop_reason()) is not None:
                raise Cancelled(reason)
            end = min(start + request.chunk, len(ids))
            logits = self._try_forward(ids[start:end], cache)
            if logits is not None:
                start = end
                continue
            if request.chunk <= self.min_prefill_chunk:
                raise request.out_of_memory()
            cache.crop(base + start)  # the layers the failed chunk reached may hold part of it
            self._free_memory()
            request.chunk = max(self.min_prefill_chunk, request.chunk // 2)
            request.notes.append(f"Ran out of GPU memory; retrying with {request.chunk:,}-token chunks")
        return logits.float() if logits is not None else None

    def _try_forward(self, ids: list[int], cache: KVCache | StockCache) -> torch.Tensor | None:
        """The last position's logits (1, vocab) after `ids`, or None when the GPU ran out of
        memory. The error is dropped here, so the memory its frames held can be freed."""
        try:
            return self._forward(torch.tensor([ids], device=self.model.device), cache, keep=1)[:, -1, :]
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            logger.warning("out of memory on %d new tokens: %s", len(ids), exc)
        return None

    def _free_memory(self) -> None:
        """Drop the cached documents (the memory easiest to give up) and return freed GPU memory."""
        self.prefix_cache.clear()
        release_memory()

    def _token_steps(
        self,
        state: _Prefilled,
        request: RequestState,
        temperature: float,
        seed: int | None,
        constraint: JsonSchemaConstraint | None,
    ) -> Iterator[int]:
        """Yield one sampled token per step, forever (the caller stops). A step that runs out of
        memory is tried once more after freeing what can be freed."""
        device = self.model.device
        generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
        logits = state.logits.clone()
        while True:
            if constraint is not None:
                constraint.mask(logits)
            token = pick_token(logits, temperature, generator)
            if constraint is not None:
                constraint.accept(token)
            yield token
            length = state.cache.length
            logits = self._try_forward([token], state.cache)
            if logits is None:
                state.cache.crop(length)
                self._free_memory()
                request.notes.append("Ran out of GPU memory while writing; freed memory and went on")
                logits = self._try_forward([token], state.cache)
                if logits is None:
                    raise request.out_of_memory()
            logits = logits.float()

    def _forward(self, input_ids: torch.Tensor, cache: KVCache | StockCache, keep: int) -> torch.Tensor:
        """Run the model on `input_ids` (1, n) with `cache`; logits of the last `keep` positions
        (all of them when keep is 0): (1, keep or n, vocab)."""
        with torch.inference_mode():
            return self._runner(input_ids, cache, keep)

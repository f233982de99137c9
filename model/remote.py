"""The openai backend: every task against an OpenAI-compatible completions server such as vLLM.

A base model takes raw prompts, so this speaks the completions API (`/v1/completions`), not chat.
Prompts go out as token ids made here by the model's own tokenizer, split exactly as the
in-process engine splits them (the document prefix, then the prompt). So token counts and budgets
are the same on both backends, and the server's prefix cache sees the same document tokens on
every request about that document.

- `stream`: server-sent events, read by a helper thread, so that a cancel or a deadline ends the
  wait at once, even during a long prefill. Hanging up (once the server has answered with its
  headers, which vLLM does at once) makes the server abort the request.
- `score`: the prompt's log-probabilities (`echo: true, logprobs: 1, max_tokens: 0`) of the
  prompt followed by each continuation, in one batched request.
- `json_schema`: the server's JSON-schema structured output (`response_format`).

The HTTP side (requests, events, errors as messages) is model/openai_server.py.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from model.errors import RequestRefused
from model.generation import (
    CALIBRATION_PROMPT,
    FinishReason,
    GenerationChunk,
    Speeds,
    join_stream,
    sampling_temperature,
)
from model.loader import load_tokenizer
from model.openai_server import READ_SECONDS, OpenAIServer, ServerRefused, ServerUnavailable
from model.request_state import Cancelled, RequestState
from model.speed_store import store_for
from model.textstream import StopStringFilter
from model.tokens import chat_frame, count_tokens

_PREFIX_IDS_KEPT = 4  # tokenized documents kept, so follow-up questions do not tokenize them again


def connect(
    base_url: str,
    *,
    served_model: str | None = None,
    api_key: str | None = None,
    tokenizer_model: str | None = None,
    read_seconds: float = READ_SECONDS,
) -> OpenAIEngine:
    """Reach the server, choose its model, load that model's tokenizer here and check that it
    splits text as the server does. `tokenizer_model` (hub id, folder, tiny-random) defaults to
    the served model's name, which is the hub id or folder vLLM was started with."""
    server = OpenAIServer.open(base_url, api_key, read_seconds)
    try:
        model, max_model_len = server.choose_model(served_model)
        tokenizer = load_tokenizer(tokenizer_model or model)
        server.check_tokenizer(model, tokenizer)
    except BaseException:
        server.close()
        raise
    context_limit = max_model_len or _tokenizer_context(tokenizer)
    return OpenAIEngine(server, model, tokenizer, context_limit, tokenizer_model or model)


class OpenAIEngine:
    """The TextEngine of tasks/interfaces.py over an OpenAI-compatible completions server."""

    def __init__(self, server: OpenAIServer, model: str, tokenizer: Any, context_limit: int, tokenizer_source: str):
        self._server = server
        self._model = model
        self.tokenizer = tokenizer
        self._context_limit = context_limit
        self.tokenizer_source = tokenizer_source
        # The server's speeds, kept between runs like the in-process engine's (model/speed_store.py).
        self._speeds = Speeds(store=store_for("openai", server.base, model))
        self._prefix_ids: OrderedDict[tuple[str | None, str], list[int]] = OrderedDict()
        self._lock = threading.Lock()
        self._calibration = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def device(self) -> str:
        return "remote"

    @property
    def is_remote(self) -> bool:
        return True

    @property
    def on_cpu(self) -> bool:
        return False  # the server's own hardware: its context sets the budget

    @property
    def context_limit(self) -> int:
        return self._context_limit

    @property
    def base_url(self) -> str:
        return self._server.base

    def summary(self) -> str:
        return (
            f"{self._model} · served by {self._server.base} (openai backend) · "
            f"context {self._context_limit:,} tokens · tokenizer {self.tokenizer_source}"
        )

    def memory_token_limit(self) -> int | None:
        return None  # the server manages its own KV cache memory

    @cached_property
    def chat_frame(self) -> tuple[str, str] | None:
        """As Engine.chat_frame: prompts go out as token ids made here, so the frame is the same."""
        return chat_frame(self.tokenizer)

    def throughput(self) -> tuple[float, float]:
        """(prefill, decode) tokens per second as measured through the server; a short request
        measures them once when nothing has been measured yet."""
        with self._calibration:  # many requests may start at once: one calibration is enough
            if not self._speeds.measured():
                self.generate(CALIBRATION_PROMPT, max_new_tokens=8)
        return self._speeds.or_slow()

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)  # in slices when long: bounded memory

    def close(self) -> None:
        self._server.close()

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
        """As Engine.stream: text deltas, then a last chunk with the finish reason and counts.
        `cache_salt` goes to the server as vLLM's `cache_salt`, so its prefix cache keeps each
        session's documents apart as the in-process engine does."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        ids = self._prompt_ids(prompt, prefix, reserve=max_new_tokens, salt=cache_salt)
        # Stop strings do not apply to JSON: the schema decides where it ends.
        stop = [text for text in stop if text] if json_schema is None else []
        stops = StopStringFilter(stop)  # also here, for servers that ignore `stop`
        payload = self._completion_payload(ids, max_new_tokens, stop, temperature, seed, json_schema)
        payload |= _salt_field(cache_salt)
        feature = "JSON-schema structured output" if json_schema is not None else "a streamed completion"
        request = RequestState(cancel, deadline, 0)
        answer = _Answer(time.perf_counter())
        events = self._server.events(payload, request, feature)
        try:
            yield from self._deltas(events, stops, answer)
        except Cancelled as stopped:
            if answer.first_at is None:  # stopped while the server read the prompt
                yield GenerationChunk(
                    "", stopped.reason, len(ids), prefill_seconds=time.perf_counter() - answer.started
                )
                return
            answer.reason = stopped.reason  # stopped while writing: what was written is counted below
        finally:
            events.close()  # hangs up if the answer is not over, so the server stops working on it
        yield self._last_chunk(answer, stops, len(ids), max_new_tokens)

    def _deltas(self, events: Iterator[dict], stops: StopStringFilter, answer: _Answer) -> Iterator[GenerationChunk]:
        """The text of the server's events, through the stop filter; notes the rest in `answer`."""
        for event in events:
            answer.usage = event.get("usage") or answer.usage
            for choice in event.get("choices") or ():
                answer.first_at = answer.first_at or time.perf_counter()
                answer.text += choice.get("text") or ""
                if text := stops.push(choice.get("text") or ""):
                    yield GenerationChunk(text)
                if choice.get("finish_reason"):
                    answer.reason = _finish_reason(choice["finish_reason"], self.base_url)
            if stops.stopped:  # a server that ignored `stop`: the filter ends the answer here
                answer.reason = "stop"
                return

    def _last_chunk(
        self, answer: _Answer, stops: StopStringFilter, prompt_tokens: int, max_new_tokens: int
    ) -> GenerationChunk:
        ended = time.perf_counter()
        first_at = answer.first_at or ended
        usage = answer.usage
        # Usage comes last; an answer ended here (a stop string the server ignored, a stop) has
        # none. Its text encoded again can take more tokens than were written: at most the limit.
        generated = int(usage.get("completion_tokens") or 0) or min(
            len(self.tokenizer.encode(answer.text, add_special_tokens=False)), max_new_tokens
        )
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        self._speeds.record(prompt_tokens - cached, first_at - answer.started, generated, ended - first_at)
        return GenerationChunk(
            text=stops.flush(),
            finish_reason="stop" if stops.stopped else answer.reason,
            prompt_tokens=int(usage.get("prompt_tokens") or prompt_tokens),
            generated_tokens=generated,
            prefill_seconds=first_at - answer.started,
            decode_seconds=ended - first_at,
            cached_tokens=cached,
        )

    def generate(self, prompt: str, **options: Any) -> GenerationChunk:
        return join_stream(self.stream(prompt, **options))

    def score(
        self, prompt: str, continuations: Sequence[str], *, prefix: str = "", cache_salt: str | None = None
    ) -> list[float]:
        """The log-likelihood of each continuation after `prefix + prompt`, from the server's
        prompt log-probabilities. One batched request; the shared part is prefilled once."""
        context = self._prompt_ids(prompt, prefix, reserve=0, salt=cache_salt)
        endings = []
        for text in continuations:
            ids = list(self.tokenizer.encode(text, add_special_tokens=False))
            if not ids:
                raise RequestRefused(f"the continuation {text!r} has no tokens")
            endings.append(ids)
        longest = len(context) + max((len(ids) for ids in endings), default=0)
        self._require_room(longest, 0)
        payload = {"model": self._model, "prompt": [context + ids for ids in endings], "max_tokens": 0,
                   "echo": True, "logprobs": 1, "temperature": 0.0, **_salt_field(cache_salt)}  # fmt: skip
        body = self._server.post("/completions", payload, "prompt log-probabilities (echo with logprobs)")
        choices = sorted(body.get("choices") or [], key=lambda choice: choice.get("index", 0))
        if len(choices) != len(endings):
            raise ServerRefused(
                f"the server at {self.base_url} answered {len(choices)} of {len(endings)} prompts of a "
                "batched request; the openai backend needs batched prompts to score labels"
            )
        return [
            self._continuation_logprob(choice, len(context), len(ids))
            for choice, ids in zip(choices, endings, strict=True)
        ]

    def _continuation_logprob(self, choice: dict, start: int, length: int) -> float:
        values = ((choice.get("logprobs") or {}).get("token_logprobs") or [])[start : start + length]
        if len(values) != length or any(value is None for value in values):
            raise ServerRefused(
                f"the server at {self.base_url} did not return the prompt's log-probabilities "
                "(echo: true with logprobs), which classification needs"
            )
        return float(sum(values))

    def _completion_payload(self, ids, max_new_tokens, stop, temperature, seed, json_schema) -> dict:
        payload: dict[str, Any] = {
            "model": self._model,
            "prompt": ids,
            "max_tokens": max_new_tokens,
            "temperature": sampling_temperature(temperature),  # the same greedy rule as in process
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if seed is not None:
            payload["seed"] = seed
        if json_schema is not None:
            schema = {"name": "fields", "schema": json_schema, "strict": True}
            payload["response_format"] = {"type": "json_schema", "json_schema": schema}
        if stop:
            payload["stop"] = list(stop)
        return payload

    def _prompt_ids(self, prompt: str, prefix: str, reserve: int, salt: str | None) -> list[int]:
        """The token ids the in-process engine would prefill: the prefix (with special tokens),
        then the prompt (without them when it follows a prefix)."""
        rest = list(self.tokenizer.encode(prompt, add_special_tokens=not prefix))
        ids = self._document_ids(prefix, salt) + rest if prefix else rest
        if not ids:
            raise RequestRefused("there is nothing to read: the prompt is empty")
        self._require_room(len(ids), reserve)
        return ids

    def _document_ids(self, prefix: str, salt: str | None) -> list[int]:
        """The prefix's token ids, kept for later requests with the same salt only (a kept
        document tokenizes at once: that must not tell another session it was read)."""
        key = (salt, prefix)
        with self._lock:
            if key in self._prefix_ids:
                self._prefix_ids.move_to_end(key)
                return self._prefix_ids[key]
        ids = self.encode(prefix)
        with self._lock:
            self._prefix_ids[key] = ids
            while len(self._prefix_ids) > _PREFIX_IDS_KEPT:
                self._prefix_ids.popitem(last=False)
        return ids

    def _require_room(self, tokens: int, reserve: int) -> None:
        if tokens + reserve > self._context_limit:
            raise RequestRefused(
                f"the prompt ({tokens:,} tokens) plus {reserve:,} new tokens exceeds the served "
                f"model's context limit of {self._context_limit:,} tokens"
            )


@dataclass
class _Answer:
    """What a stream has seen so far: when it began, its first text, its whole text, how it ended."""

    started: float
    first_at: float | None = None
    text: str = ""
    reason: FinishReason = "length"
    usage: dict = field(default_factory=dict)


def _salt_field(salt: str | None) -> dict[str, str]:
    """vLLM's `cache_salt` request field: prefix-cache entries are shared only within one salt."""
    return {"cache_salt": salt} if salt else {}


def _finish_reason(theirs: str, base: str) -> FinishReason:
    """'stop' and 'length' end an answer normally; anything else (vLLM's 'abort' or 'error') means
    the server gave up on it."""
    if theirs in ("stop", "length"):
        return theirs  # type: ignore[return-value]
    raise ServerUnavailable(f"the model server at {base} ended the answer with {theirs!r}; try again")


def _tokenizer_context(tokenizer: Any) -> int:
    """The context when the server does not say it: the tokenizer's, if it states a real one."""
    length = getattr(tokenizer, "model_max_length", 0) or 0
    return int(length) if 0 < length <= 10_000_000 else 4096

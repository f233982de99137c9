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

Errors reach the tasks as the builtin types they already handle: ConnectionError when the server
cannot serve at all (unreachable, a refused key, a failure on its side), ValueError when it
refuses this request (too long, a feature it lacks). Both carry a message for the user.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx

from model.generation import CALIBRATION_PROMPT, FinishReason, GenerationChunk, Speeds, join_stream
from model.limits import Cancelled, RequestState
from model.loader import load_tokenizer
from model.textstream import StopStringFilter

logger = logging.getLogger(__name__)

API_KEY_VARIABLES = ("GRANITE_LONGDOC_API_KEY", "OPENAI_API_KEY")
CONNECT_SECONDS = 10.0
READ_SECONDS = 600.0  # a silent server is given up after this (a 128K-token prefill can take minutes)
POLL_SECONDS = 0.1  # how often a waiting stream looks at its cancel event and deadline
_TOKENIZER_PROBE = 'Granite Long-Doc: Grüße, 東京, ١٢٣ and {"json": [1, 2]}\n'
_PREFIX_IDS_KEPT = 4  # tokenized documents kept, so follow-up questions do not tokenize them again
_END = object()
_GUIDE = "see the README's section on serving with vLLM"


class ServerUnavailable(ConnectionError):
    """The server cannot serve at all now (unreachable, a refused key, a failure on its side)."""


class ServerUnreachable(ServerUnavailable):
    """Nothing answers at the address (yet: a server that is still loading its model)."""


class ServerRefused(ValueError):
    """The server refused this request (too long, or a feature it does not have)."""


def api_key_from_environment() -> str | None:
    return next((os.environ[name] for name in API_KEY_VARIABLES if os.environ.get(name)), None)


def normalize_base_url(base_url: str) -> str:
    """'http://host:8000', 'http://host:8000/' and 'http://host:8000/v1' all mean '.../v1'."""
    url = base_url.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--base-url must be an http(s) address such as http://localhost:8000/v1 (got {base_url!r})")
    return url if parsed.path.endswith("/v1") else url + "/v1"


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
    base = normalize_base_url(base_url)
    key = api_key or api_key_from_environment()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx.Timeout(read_seconds, connect=CONNECT_SECONDS)
    # No pool limit: the web UI bounds how many tasks run at once (--max-concurrent).
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
    client = httpx.Client(base_url=base, headers=headers, timeout=timeout, limits=limits)
    try:
        server = _Server(client, base)
        model, max_model_len = server.choose_model(served_model)
        tokenizer = load_tokenizer(tokenizer_model or model)
        server.check_tokenizer(model, tokenizer)
    except BaseException:
        client.close()
        raise
    context_limit = max_model_len or _tokenizer_context(tokenizer)
    return OpenAIEngine(server, model, tokenizer, context_limit, tokenizer_model or model)


class OpenAIEngine:
    """The TextEngine of tasks/interfaces.py over an OpenAI-compatible completions server."""

    def __init__(self, server: _Server, model: str, tokenizer: Any, context_limit: int, tokenizer_source: str):
        self._server = server
        self._model = model
        self.tokenizer = tokenizer
        self._context_limit = context_limit
        self.tokenizer_source = tokenizer_source
        self._speeds = Speeds()
        self._prefix_ids: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()
        self._calibration = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def device(self) -> str:
        return "remote"

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
        return len(self.encode(text))

    def close(self) -> None:
        self._server.client.close()

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
    ) -> Iterator[GenerationChunk]:
        """As Engine.stream: text deltas, then a last chunk with the finish reason and counts."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        ids = self._prompt_ids(prompt, prefix, reserve=max_new_tokens)
        stops = StopStringFilter(() if json_schema is not None else stop)
        payload = self._completion_payload(ids, max_new_tokens, stop, temperature, seed, json_schema)
        feature = "JSON-schema structured output" if json_schema is not None else "a streamed completion"
        run = RequestState(cancel, deadline, 0)
        answer = _Answer(time.perf_counter())
        events = self._server.events(payload, run, feature)
        try:
            yield from self._deltas(events, stops, answer)
        except Cancelled as stopped:
            yield GenerationChunk("", stopped.reason, len(ids), prefill_seconds=time.perf_counter() - answer.started)
            return
        finally:
            events.close()  # hangs up if the answer is not over, so the server stops working on it
        yield self._last_chunk(answer, stops, len(ids))

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

    def _last_chunk(self, answer: _Answer, stops: StopStringFilter, prompt_tokens: int) -> GenerationChunk:
        ended = time.perf_counter()
        first_at = answer.first_at or ended
        usage = answer.usage
        # Usage comes last; an answer ended here (a stop string the server ignored) has none.
        generated = int(usage.get("completion_tokens") or 0) or len(
            self.tokenizer.encode(answer.text, add_special_tokens=False)
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

    def score(self, prompt: str, continuations: Sequence[str], *, prefix: str = "") -> list[float]:
        """The log-likelihood of each continuation after `prefix + prompt`, from the server's
        prompt log-probabilities. One batched request; the shared part is prefilled once."""
        context = self._prompt_ids(prompt, prefix, reserve=0)
        endings = []
        for text in continuations:
            ids = list(self.tokenizer.encode(text, add_special_tokens=False))
            if not ids:
                raise ValueError(f"the continuation {text!r} has no tokens")
            endings.append(ids)
        longest = len(context) + max((len(ids) for ids in endings), default=0)
        self._require_room(longest, 0)
        payload = {"model": self._model, "prompt": [context + ids for ids in endings], "max_tokens": 0,
                   "echo": True, "logprobs": 1, "temperature": 0.0}  # fmt: skip
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
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if seed is not None:
            payload["seed"] = seed
        if json_schema is not None:  # stop strings do not apply: the schema decides where the JSON ends
            schema = {"name": "fields", "schema": json_schema, "strict": True}
            payload["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif stops := [text for text in stop if text]:
            payload["stop"] = stops
        return payload

    def _prompt_ids(self, prompt: str, prefix: str, reserve: int) -> list[int]:
        """The token ids the in-process engine would prefill: the prefix (with special tokens),
        then the prompt (without them when it follows a prefix)."""
        rest = list(self.tokenizer.encode(prompt, add_special_tokens=not prefix))
        ids = self._document_ids(prefix) + rest if prefix else rest
        if not ids:
            raise ValueError("there is nothing to read: the prompt is empty")
        self._require_room(len(ids), reserve)
        return ids

    def _document_ids(self, prefix: str) -> list[int]:
        with self._lock:
            if prefix in self._prefix_ids:
                self._prefix_ids.move_to_end(prefix)
                return self._prefix_ids[prefix]
        ids = self.encode(prefix)
        with self._lock:
            self._prefix_ids[prefix] = ids
            while len(self._prefix_ids) > _PREFIX_IDS_KEPT:
                self._prefix_ids.popitem(last=False)
        return ids

    def _require_room(self, tokens: int, reserve: int) -> None:
        if tokens + reserve > self._context_limit:
            raise ValueError(
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


class _Server:
    """HTTP to one OpenAI-compatible server: JSON requests, server-sent events, and its errors
    turned into messages for the user."""

    def __init__(self, client: httpx.Client, base: str):
        self.client = client
        self.base = base

    def choose_model(self, requested: str | None) -> tuple[str, int | None]:
        """The served model's id (the one asked for, or the only one) and its context length."""
        cards = self.get("/models").get("data") or []
        served = {card.get("id"): card for card in cards if isinstance(card, dict) and card.get("id")}
        if not served:
            raise ServerUnavailable(f"the server at {self.base} serves no model (GET /v1/models is empty)")
        names = ", ".join(sorted(served))
        if requested is None and len(served) > 1:
            raise ServerUnavailable(
                f"the server at {self.base} serves several models ({names}); choose one with --served-model"
            )
        model = requested or next(iter(served))
        if model not in served:
            raise ServerUnavailable(f"the server at {self.base} does not serve {model!r}; it serves {names}")
        length = served[model].get("max_model_len")
        return model, int(length) if isinstance(length, int) and length > 0 else None

    def check_tokenizer(self, model: str, tokenizer: Any) -> None:
        """Where the server can tokenize (vLLM's /tokenize), make sure our tokenizer agrees."""
        root = self.base.removesuffix("/v1")
        try:
            response = self.client.post(f"{root}/tokenize", json={"model": model, "prompt": _TOKENIZER_PROBE})
        except httpx.HTTPError:
            return
        if response.status_code != 200:
            logger.info(
                "the server cannot tokenize (HTTP %d); the tokenizer is not cross-checked", response.status_code
            )
            return
        theirs = _json(response).get("tokens")
        ours = list(tokenizer.encode(_TOKENIZER_PROBE))
        if isinstance(theirs, list) and theirs != ours:
            raise ServerUnavailable(
                f"the local tokenizer splits text differently from {model} on the server, so token "
                "counts and prompts would be wrong; pass --model with the served model's hub id or folder"
            )

    def get(self, path: str) -> dict:
        return self._request("GET", path, None, "the model list")

    def post(self, path: str, payload: dict, feature: str) -> dict:
        return self._request("POST", path, payload, feature)

    def _request(self, method: str, path: str, payload: dict | None, feature: str) -> dict:
        try:
            response = self.client.request(method, path, json=payload)
        except httpx.HTTPError as exc:
            raise self._failure(exc) from exc
        if response.status_code != 200:
            raise self._refusal(response, feature)
        return _json(response, self.base)

    def events(self, payload: dict, run: RequestState, feature: str) -> Iterator[dict]:
        """The parsed events of a streamed completion. A helper thread reads the connection; this
        generator waits for its events, raising Cancelled as soon as `run` says stop. Closing the
        generator early hangs up, which makes the server abort the request."""
        inbox: queue.Queue = queue.Queue()
        line = _Line()
        threading.Thread(target=self._read_events, args=(payload, feature, inbox, line), daemon=True).start()
        try:
            while True:
                if (reason := run.stop_reason()) is not None:
                    raise Cancelled(reason)
                try:
                    item = inbox.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            line.hang_up()

    def _read_events(self, payload: dict, feature: str, inbox: queue.Queue, line: _Line) -> None:
        try:
            with self.client.stream("POST", "/completions", json=payload) as response:
                if not line.attach(response):
                    return
                try:
                    finished = self._forward_events(response, feature, inbox)
                finally:
                    line.detach()  # the connection may go back to the pool: no hang-up may reach it now
            if not finished:  # neither [DONE] nor a finish reason: the connection broke
                raise ServerUnavailable(
                    f"the model server at {self.base} ended the answer early (the stream broke off)"
                )
            inbox.put(_END)
        except Exception as exc:
            if line.hung_up:
                return  # the caller has gone; the error is only the hang-up
            inbox.put(self._failure(exc) if isinstance(exc, httpx.HTTPError) else exc)

    def _forward_events(self, response: httpx.Response, feature: str, inbox: queue.Queue) -> bool:
        """Put the response's events in `inbox`; True when the answer ended properly."""
        if response.status_code != 200:
            response.read()
            raise self._refusal(response, feature)
        finished = False
        for text in response.iter_lines():
            data = text.removeprefix("data:").strip() if text.startswith("data:") else None
            if data == "[DONE]":
                return True
            if data:
                event = _parse_event(data, self.base)
                finished = finished or any(choice.get("finish_reason") for choice in event.get("choices") or ())
                inbox.put(event)
        return finished

    def _failure(self, exc: httpx.HTTPError) -> ServerUnavailable:
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return ServerUnreachable(f"cannot reach the model server at {self.base} ({exc}); is it running? ({_GUIDE})")
        if isinstance(exc, httpx.ReadTimeout):
            return ServerUnavailable(f"the model server at {self.base} sent nothing for too long; it may be overloaded")
        return ServerUnavailable(
            f"the connection to the model server at {self.base} failed ({type(exc).__name__}: {exc})"
        )

    def _refusal(self, response: httpx.Response, feature: str) -> Exception:
        status, message = response.status_code, _error_message(response)
        if status in (401, 403):
            variables = " or ".join(API_KEY_VARIABLES)
            return ServerUnavailable(
                f"the model server at {self.base} refused the API key (HTTP {status}); "
                f"pass --api-key or set {variables}"
            )
        if status in (429, 503):
            return ServerUnavailable(f"the model server at {self.base} is busy (HTTP {status}: {message}); try again")
        if status >= 500:
            return ServerUnavailable(f"the model server at {self.base} failed (HTTP {status}: {message})")
        if status == 404 and "model" in message.lower():  # it no longer serves the model it listed
            return ServerUnavailable(f"the model server at {self.base} cannot serve the model (HTTP 404: {message})")
        if status in (404, 405):
            return ServerRefused(
                f"the server at {self.base} has no OpenAI completions API for {feature} (HTTP {status}); the "
                "openai backend needs /v1/completions, as vLLM serves it"
            )
        return ServerRefused(f"the model server at {self.base} refused {feature} (HTTP {status}): {message}")


class _Line:
    """The connection a helper thread reads, so that another thread can hang it up. Shutting the
    socket down wakes the blocked read at once; the reader's own `with` block then closes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._response: httpx.Response | None = None
        self.hung_up = False

    def attach(self, response: httpx.Response) -> bool:
        """Remember the response; False when the caller has already hung up."""
        with self._lock:
            self._response = response
            if self.hung_up:
                _shut_down(response)
            return not self.hung_up

    def detach(self) -> None:
        with self._lock:
            self._response = None

    def hang_up(self) -> None:
        with self._lock:
            self.hung_up = True
            if self._response is not None:
                _shut_down(self._response)


def _shut_down(response: httpx.Response) -> None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


def _finish_reason(theirs: str, base: str) -> FinishReason:
    """'stop' and 'length' end an answer normally; anything else (vLLM's 'abort' or 'error') means
    the server gave up on it."""
    if theirs in ("stop", "length"):
        return theirs  # type: ignore[return-value]
    raise ServerUnavailable(f"the model server at {base} ended the answer with {theirs!r}; try again")


def _parse_event(data: str, base: str) -> dict:
    try:
        event = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ServerUnavailable(f"the model server at {base} sent an event that is not JSON: {data[:120]!r}") from exc
    if isinstance(event, dict) and "error" in event and not event.get("choices"):
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        code = error.get("code") if isinstance(error, dict) else None
        failed = ServerUnavailable if not isinstance(code, int) or code >= 500 else ServerRefused
        raise failed(f"the model server at {base} stopped with an error: {message}")
    return event


def _json(response: httpx.Response, base: str = "") -> dict:
    try:
        body = response.json()
    except ValueError as exc:
        where = f" at {base}" if base else ""
        raise ServerUnavailable(
            f"the server{where} did not answer with JSON; is it an OpenAI-compatible server? ({_GUIDE})"
        ) from exc
    return body if isinstance(body, dict) else {}


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300] or response.reason_phrase
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") or error.get("detail") if isinstance(error, dict) else error
    return " ".join(str(message).split())[:300]


def _tokenizer_context(tokenizer: Any) -> int:
    """The context when the server does not say it: the tokenizer's, if it states a real one."""
    length = getattr(tokenizer, "model_max_length", 0) or 0
    return int(length) if 0 < length <= 10_000_000 else 4096

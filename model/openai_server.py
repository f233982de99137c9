"""HTTP to one OpenAI-compatible server: JSON requests, server-sent events that a caller can stop
waiting for at once, and the server's errors turned into messages for the user.

Errors are the engines' own (model/errors.py): EngineUnavailable (ServerUnavailable) when the
server cannot serve at all (unreachable, a refused key, a failure on its side), RequestRefused
(ServerRefused) when it refuses this request (too long, a feature it lacks).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx

from model.errors import EngineUnavailable, RequestRefused
from model.request_state import Cancelled, RequestState

logger = logging.getLogger(__name__)

API_KEY_VARIABLES = ("GRANITE_LONGDOC_API_KEY", "OPENAI_API_KEY")
CONNECT_SECONDS = 10.0
READ_SECONDS = 600.0  # a silent server is given up after this (a 128K-token prefill can take minutes)
POLL_SECONDS = 0.1  # how often a waiting stream looks at its cancel event and deadline
_TOKENIZER_PROBE = 'Granite Long-Doc: Grüße, 東京, ١٢٣ and {"json": [1, 2]}\n'
_END = object()
_GUIDE = "see the README's section on serving with vLLM"


class ServerUnavailable(EngineUnavailable):
    """The server cannot serve at all now (unreachable, a refused key, a failure on its side)."""


class ServerUnreachable(ServerUnavailable):
    """Nothing answers at the address (yet: a server that is still loading its model)."""


class ServerRefused(RequestRefused):
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


class OpenAIServer:
    """HTTP to one OpenAI-compatible server: JSON requests, server-sent events, and its errors
    turned into messages for the user."""

    def __init__(self, client: httpx.Client, base: str):
        self.client = client
        self.base = base
        # vLLM's `cache_salt` keeps each session's prefix cache apart; a server that refuses the
        # field gets requests without it (and shares its cache between sessions: logged once).
        self.accepts_cache_salt = True

    @classmethod
    def open(cls, base_url: str, api_key: str | None, read_seconds: float = READ_SECONDS) -> OpenAIServer:
        """A client for `base_url` (normalized), with the key given or from the environment."""
        base = normalize_base_url(base_url)
        key = api_key or api_key_from_environment()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        timeout = httpx.Timeout(read_seconds, connect=CONNECT_SECONDS)
        # No pool limit: the web UI bounds how many tasks run at once (--max-concurrent).
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
        return cls(httpx.Client(base_url=base, headers=headers, timeout=timeout, limits=limits), base)

    def close(self) -> None:
        self.client.close()

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
        payload = self._salted(payload)
        try:
            response = self.client.request(method, path, json=payload)
            if (unsalted := self._salt_refused(response, payload)) is not None:
                response = self.client.request(method, path, json=unsalted)
        except httpx.HTTPError as exc:
            raise self._failure(exc) from exc
        if response.status_code != 200:
            raise self._refusal(response, feature)
        return _json(response, self.base)

    def _salted(self, payload: dict | None) -> dict | None:
        """`payload` as this server takes it: without `cache_salt` once the server refused it."""
        if payload is None or self.accepts_cache_salt or "cache_salt" not in payload:
            return payload
        return {key: value for key, value in payload.items() if key != "cache_salt"}

    def _salt_refused(self, response: httpx.Response, payload: dict | None) -> dict | None:
        """When the server refused `payload` because of its `cache_salt`: the payload without it
        (and the server is remembered as one without salts); else None."""
        if response.status_code != 400 or not payload or "cache_salt" not in payload:
            return None
        response.read()
        if "cache_salt" not in _error_message(response):
            return None
        if self.accepts_cache_salt:
            logger.warning(
                "the model server at %s refuses cache_salt: its prefix cache is shared between sessions, so "
                "timing can tell one session that another read the same document (vLLM keeps them apart)",
                self.base,
            )
        self.accepts_cache_salt = False
        return self._salted(payload)

    def events(self, payload: dict, request: RequestState, feature: str) -> Iterator[dict]:
        """The parsed events of a streamed completion. A helper thread reads the connection; this
        generator waits for its events, raising Cancelled as soon as `request` says stop. Closing the
        generator early hangs up, which makes the server abort the request."""
        inbox: queue.Queue = queue.Queue()
        line = _Line()
        threading.Thread(target=self._read_events, args=(payload, feature, inbox, line), daemon=True).start()
        try:
            while True:
                if (reason := request.stop_reason()) is not None:
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
            payload = self._salted(payload)
            finished = self._stream_events(payload, feature, inbox, line)
            if finished is None:  # the server refused the cache salt: once more without it
                finished = self._stream_events(self._salted(payload), feature, inbox, line)
            if not finished:  # neither [DONE] nor a finish reason: the connection broke
                raise ServerUnavailable(
                    f"the model server at {self.base} ended the answer early (the stream broke off)"
                )
            inbox.put(_END)
        except Exception as exc:
            if line.hung_up:
                return  # the caller has gone; the error is only the hang-up
            inbox.put(self._failure(exc) if isinstance(exc, httpx.HTTPError) else exc)

    def _stream_events(self, payload: dict, feature: str, inbox: queue.Queue, line: _Line) -> bool | None:
        """One streamed request; None when the server refused its cache salt (nothing was sent
        to `inbox` then)."""
        with self.client.stream("POST", "/completions", json=payload) as response:
            if self._salt_refused(response, payload) is not None:
                return None
            if not line.attach(response):
                return True  # the caller has gone: nothing more to read
            try:
                return self._forward_events(response, feature, inbox)
            finally:
                line.detach()  # the connection may go back to the pool: no hang-up may reach it now

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

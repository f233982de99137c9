"""A scripted OpenAI-compatible server for the openai backend's error paths (no model needed).

It serves /v1/models, /tokenize and /v1/completions (streamed or not) as a test configures it:
which models, which key, which answers, which refusals. The happy paths are tested against a
real vLLM server in test_vllm.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOLD_LIMIT_S = 30  # the longest a held stream waits for its test (Script.prefill_done)


@dataclass
class Script:
    models: list[dict] = field(default_factory=lambda: [{"id": "granite", "max_model_len": 4096}])
    api_key: str | None = None
    tokenize: list[int] | None = None  # what /tokenize answers (None: 404, as servers without it)
    pieces: list[str] = field(default_factory=lambda: ["Hello", " world", ".", " More"])
    finish_reason: str = "length"
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 5, "completion_tokens": 4})
    # A long prefill: a stream calls `on_stream` when it starts, then sends nothing until `prefill_done`
    # is set (or HOLD_LIMIT_S passed: a test that never sets it fails instead of hanging).
    prefill_done: threading.Event | None = None
    on_stream: Callable[[], object] | None = None
    end_early: bool = False  # close the stream without finishing it
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)  # request kind -> (status, message)
    logprobs: bool = True
    models_body: bytes | None = None  # replaces the JSON answer of /v1/models
    requests: list[dict] = field(default_factory=list)  # every request body, in order
    hang_ups: int = 0  # streams the client closed before they ended
    headers: list[dict] = field(default_factory=list)
    unknown_fields: tuple[str, ...] = ()  # request fields this server refuses (HTTP 400), as strict servers do


def fake_logprob(prompt_index: int, position: int) -> float:
    """What the fake says a prompt token's log-probability is: different at every position, so a
    slice that is off by one sums to something else."""
    return -0.01 * position - 0.5 * prompt_index


class FakeOpenAI:
    def __init__(self, script: Script, port: int = 0):
        self.script = script
        handler = type("Handler", (_Handler,), {"script": script})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path == "/v1/models":
            if self.script.models_body is not None:
                self._send(200, self.script.models_body, "text/html")
            else:
                self._json(200, {"object": "list", "data": self.script.models})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.script.requests.append(body)
        self.script.headers.append(dict(self.headers))
        if not self._authorized():
            return
        if self.path == "/tokenize":
            if self.script.tokenize is None:
                self._json(404, {"detail": "Not Found"})
            else:
                self._json(200, {"tokens": self.script.tokenize, "count": len(self.script.tokenize)})
            return
        if self.path != "/v1/completions":
            self._json(404, {"detail": "Not Found"})
            return
        kind = "schema" if "response_format" in body else "score" if body.get("echo") else "stream"
        if unknown := [name for name in self.script.unknown_fields if name in body]:
            self._json(400, {"error": {"message": f"Unrecognized request argument supplied: {unknown[0]}",
                                       "type": "invalid_request_error", "code": 400}})  # fmt: skip
        elif kind in self.script.refuse:
            status, message = self.script.refuse[kind]
            self._json(status, {"error": {"message": message, "type": "BadRequestError", "code": status}})
        elif kind == "score":
            self._score(body)
        else:
            self._stream(body)

    def _score(self, body: dict) -> None:
        choices = []
        for index, ids in enumerate(body["prompt"]):
            values = [None] + [fake_logprob(index, position) for position in range(1, len(ids))]
            logprobs = {"token_logprobs": values} if self.script.logprobs else None
            choices.append({"index": index, "text": "", "logprobs": logprobs, "finish_reason": "length"})
        self._json(200, {"object": "text_completion", "choices": choices})

    def _stream(self, body: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if self.script.on_stream is not None:
            self.script.on_stream()
        if self.script.prefill_done is not None:
            self.script.prefill_done.wait(HOLD_LIMIT_S)
        pieces = self.script.pieces
        try:
            for number, piece in enumerate(pieces):
                last = number == len(pieces) - 1 and not self.script.end_early
                choice = {"index": 0, "text": piece, "finish_reason": self.script.finish_reason if last else None}
                self._event({"choices": [choice]})
            if self.script.end_early:
                return
            self._event({"choices": [], "usage": self.script.usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.script.hang_ups += 1

    def _event(self, data: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        self.wfile.flush()

    def _authorized(self) -> bool:
        if self.script.api_key is None or self.headers.get("Authorization") == f"Bearer {self.script.api_key}":
            return True
        self._json(401, {"error": {"message": "Unauthorized", "code": 401}})
        return False

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

"""Sign-in guard: a growing pause after repeated wrong passwords, and a login page that says
nothing about the app.

Gradio's POST /login checks passwords as fast as they come (README, "Measured limits"), and its login
page embeds the whole API description (every endpoint and its parameters), although
/gradio_api/info answers 401 before sign-in; Gradio has no option for either. `SignInGuard`, an
ASGI middleware, therefore:

- counts each client's sign-in tries (`SignInLimiter`): FREE_TRIES wrong ones are free, then each
  further try must wait a pause that doubles up to MAX_PAUSE; a success clears the count. A try
  during a pause gets 429 with Retry-After and a JSON `detail`, and its password is not checked;
- rewrites the login page (only the login page: its config says `auth_required`): no API
  description, the pause as a message while the client must wait, and a small script that reloads
  the page when a sign-in gets 429, because Gradio's login form reacts only to 400 ("Incorrect
  credentials") and 200 (reload); the reloaded page shows the message.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.guards import answer, drain

logger = logging.getLogger(__name__)

FREE_TRIES = 5
FIRST_PAUSE = 1.0  # seconds after the last free try; doubles with each further wrong one
MAX_PAUSE = 15 * 60.0
MAX_CLIENTS = 10_000  # clients remembered; the least recently seen is forgotten first
MAX_FORM_BYTES = 64 * 1024  # a refused sign-in's form is read up to this much before answering
CONFIG_START = "window.gradio_config = "
API_INFO = re.compile(r"window\.gradio_api_info = .*?;</script>", re.DOTALL)
RELOAD_ON_429 = (  # Gradio's login form ignores a 429; reloading shows the pause in the page's message
    "<script>(()=>{const f=window.fetch;window.fetch=async(...a)=>{const r=await f(...a);"
    "const u=a[0] instanceof Request?a[0].url:String(a[0]);"
    "if(r.status===429&&/\\/login\\/?$/.test(new URL(u,location.href).pathname))location.reload();"
    "return r}})();</script>"
)


@dataclass
class _Client:
    tries: int = 0  # since the last success; a try counts from its start, so parallel ones count too
    wait_until: float = 0.0


class SignInLimiter:
    """Sign-in tries per client, in a table of bounded size. Not thread-safe: the ASGI middleware
    uses it from the event loop only."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        free_tries: int = FREE_TRIES,
        first_pause: float = FIRST_PAUSE,
        max_pause: float = MAX_PAUSE,
        capacity: int = MAX_CLIENTS,
    ) -> None:
        self.clock, self.free_tries, self.capacity = clock, free_tries, capacity
        self.first_pause, self.max_pause = first_pause, max_pause
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def start(self, client: str) -> float:
        """Begin a sign-in try: 0.0 when `client` may try now (the try counts as wrong until
        `succeeded`), else the seconds it must still wait."""
        now, record = self.clock(), self._record(client)
        if record.wait_until > now:
            return record.wait_until - now
        record.tries += 1
        if record.tries >= self.free_tries:
            record.wait_until = now + self.pause(record.tries)
        return 0.0

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def wait(self, client: str) -> float:
        """Seconds `client` must still wait before its next try (0.0: none)."""
        record = self._clients.get(client)
        return max(0.0, record.wait_until - self.clock()) if record else 0.0

    def pause(self, tries: int) -> float:
        """The pause after `tries` wrong tries (from the last free one on)."""
        return min(self.max_pause, self.first_pause * 2.0 ** min(64, tries - self.free_tries))

    def _record(self, client: str) -> _Client:
        record = self._clients.get(client)
        if record is None:
            record = self._clients[client] = _Client()
            if len(self._clients) > self.capacity:
                self._clients.popitem(last=False)
        self._clients.move_to_end(client)
        return record


def client_key(scope: Scope) -> str:
    """Who is signing in: the peer address, an IPv6 one by its /64 network (one host usually has a
    whole /64 to pick from).

    Behind a reverse proxy the peer is the proxy, so all users would share one count. We do not read
    X-Forwarded-For ourselves: uvicorn, which Gradio runs, has already replaced the peer by the
    right-most address in that header that is not a trusted proxy, when the peer is one
    (FORWARDED_ALLOW_IPS; default 127.0.0.1 and ::1, a proxy on the same machine). A proxy on another
    machine of a private network must be named there. Trusting the header from every private address
    instead would let any machine of that network pick a new name for each try."""
    host = (scope.get("client") or ("unknown", 0))[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(getattr(address, "ipv4_mapped", None) or address)


def pause_message(seconds: float) -> str:
    count, unit = (math.ceil(seconds), "second") if seconds < 90 else (math.ceil(seconds / 60), "minute")
    wait = f"{count} {unit}{'s' if count != 1 else ''}"
    return f"Too many wrong sign-ins from your address: wait {wait}, then try again."


class SignInGuard:
    """ASGI middleware around Gradio's /login route and its login page."""

    def __init__(self, app: ASGIApp, limiter: SignInLimiter | None = None) -> None:
        self.app = app
        self.limiter = limiter or SignInLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/login"):
            await self._sign_in(scope, receive, send)
        elif scope["type"] == "http" and scope["method"] == "GET":
            await self.app(scope, receive, LoginPageRewriter(send, self.limiter.wait(client_key(scope))))
        else:
            await self.app(scope, receive, send)

    async def _sign_in(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = client_key(scope)
        wait = self.limiter.start(client)
        if wait > 0:
            await drain(receive, MAX_FORM_BYTES)
            message = pause_message(wait)
            await answer(send, 429, {"detail": message}, {"retry-after": str(math.ceil(wait))})
            return
        status = 0

        async def send_watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_watched)
        if status == 200:
            self.limiter.succeeded(client)
        elif (pause := self.limiter.wait(client)) > 0:
            logger.warning("sign-in from %s paused for %.0f s after repeated wrong passwords", client, pause)


class LoginPageRewriter:
    """A `send` that holds back an HTML response and, if it is Gradio's login page, rewrites it."""

    def __init__(self, send: Send, wait: float) -> None:
        self.send, self.wait = send, wait
        self.start: Message | None = None
        self.body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            kind = dict(message.get("headers", [])).get(b"content-type", b"")
            if kind.startswith(b"text/html"):
                self.start = message  # held until the whole page is here
                return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        page = rewrite_login_page(self.body.decode("utf-8", "replace"), self.wait)
        data = self.body if page is None else page.encode("utf-8")
        headers = [(key, value) for key, value in self.start.get("headers", []) if key != b"content-length"]
        await self.send({**self.start, "headers": [*headers, (b"content-length", str(len(data)).encode())]})
        await self.send({"type": "http.response.body", "body": bytes(data)})


def rewrite_login_page(page: str, wait: float = 0.0) -> str | None:
    """Gradio's login page without the API description, with the pause message while `wait` > 0
    and the reload-on-429 script; None for any other page (kept as it is)."""
    config = _page_config(page)
    if config is None or config.get("auth_required") is not True:
        return None
    page, found = API_INFO.subn(lambda _: f"window.gradio_api_info = null;</script>{RELOAD_ON_429}", page, count=1)
    if not found:  # Gradio's page changed (the tests say so); serve it rather than no sign-in at all
        logger.error("the login page has no window.gradio_api_info to remove")
        return None
    if wait > 0:
        config["auth_message"] = (config.get("auth_message") or "") + f"<p><b>{escape(pause_message(wait))}</b></p>"
        start = page.index(CONFIG_START) + len(CONFIG_START)
        end = page.index(";</script>", start)
        page = page[:start] + _script_json(config) + page[end:]
    return page


def _page_config(page: str) -> dict | None:
    start = page.find(CONFIG_START)
    end = page.find(";</script>", start)
    if start < 0 or end < 0:
        return None
    text = page[start + len(CONFIG_START) : end]
    # Quick test first: an app's page carries a large config, and the login page's starts so. Inside
    # a JSON string the quotes would be escaped, so text shown by the app cannot match.
    if '"auth_required":true' not in text:
        return None
    return json.loads(text)


def _script_json(value: dict) -> str:
    """JSON safe inside a <script> element, as Gradio's own `toorjson` filter writes it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, escaped)
    return text

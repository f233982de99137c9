"""How the web UI is served: sign-in, upload size, the queue, the port, how long files are kept,
and public share links.

These are the `serve` options of app.py, checked before anything starts (before the model loads)
so a wrong value is one clear message, not a traceback or a half-started server.
"""

from __future__ import annotations

import errno
import math
import os
import socket
from dataclasses import dataclass
from typing import Any

from app.files import app_folders, sweeping
from tasks.documents import MAX_FILE_BYTES
from tasks.errors import InvalidRequest

AUTH_VARIABLE = "GRANITE_LONGDOC_AUTH"  # "user:password", several separated by commas
SHARE_SERVER = ("api.gradio.app", 443)  # where Gradio asks for a gradio.live tunnel
DEFAULT_MAX_FILE_MB = MAX_FILE_BYTES // 2**20  # the readers' own limit
DEFAULT_MAX_QUEUE = 16
DEFAULT_KEEP_MINUTES = 60  # uploads and exports are deleted this long after they were written


@dataclass(frozen=True)
class ServeOptions:
    host: str | None
    port: int | None
    share: bool
    auth: list[tuple[str, str]] | None
    max_file_mb: float
    max_queue: int
    keep_minutes: float = DEFAULT_KEEP_MINUTES

    @property
    def keep_seconds(self) -> int:
        return max(1, int(self.keep_minutes * 60))

    def queue_kwargs(self) -> dict:
        # Other events one at a time; the task events set their own limit (one generation at a
        # time in process, --max-concurrent on a model server). Waiting requests beyond
        # `max_queue` are turned away with Gradio's "Queue is full" message.
        return {"default_concurrency_limit": 1, "max_size": self.max_queue}

    def launch_kwargs(self) -> dict:
        return {
            "server_name": self.host,
            "server_port": self.port,
            "share": self.share,
            "auth": self.auth,
            "auth_message": "Granite Long-Doc: sign in with the user name and password you were given."
            if self.auth
            else None,
            "max_file_size": int(self.max_file_mb * 2**20),  # bytes (Gradio takes whole units only)
            # Gradio takes a returned file into its cache only from its upload folder, the working
            # directory, the system's temporary folder, or these: with GRADIO_TEMP_DIR elsewhere,
            # the exports folder is in none of the others.
            "allowed_paths": [str(app_folders().exports)],
            # Passed to Gradio's FastAPI app: our middleware runs inside Gradio's CORS and Brotli
            # middleware (so it sees plain bodies); the lifespan sweeps the app's folders.
            "app_kwargs": {"middleware": self.middleware(), "lifespan": sweeping(self.keep_seconds)},
        }

    def middleware(self) -> list[Any]:
        """The guards in front of Gradio's routes: a clear answer when the disk is full and, with
        sign-in, a growing pause after wrong passwords and a login page without the API."""
        # Imported here: they import gradio, which the command-line tasks never need.
        from starlette.middleware import Middleware

        from app.guards import UploadSpaceGuard, install_upload_cleanup
        from app.signin import SignInGuard, SignInLimiter

        install_upload_cleanup()
        guards = [Middleware(UploadSpaceGuard)]
        if self.auth:
            guards.append(Middleware(SignInGuard, limiter=SignInLimiter()))
        return guards


def serve_options(
    host: str | None,
    port: int | str | None,
    share: bool,
    auth: str | None,
    max_file_mb: float | str,
    max_queue: int | str,
    keep_minutes: float | str = DEFAULT_KEEP_MINUTES,
) -> ServeOptions:
    """Check the serve options (numbers may come as the command line's text): that an explicit
    --port is free now, that the app's file folders can be made, and, for --share, that the share
    server can be reached."""
    keep = positive_number("--keep-files-minutes", keep_minutes, "minutes")
    megabytes = positive_number("--max-file-mb", max_file_mb, "megabytes")
    queue = whole_number("--max-queue", max_queue, 1)
    port = None if port is None else whole_number("--port", port, 1, 65535)
    credentials = parse_auth(auth if auth is not None else os.environ.get(AUTH_VARIABLE))
    if port is not None:
        check_port_free(host, port)
    app_folders()  # a folder that is a symbolic link or someone else's is refused now, not after loading
    if share:
        check_share_reachable()
    return ServeOptions(host, port, share, credentials, megabytes, queue, keep)


def positive_number(option: str, value: float | str, unit: str) -> float:
    """A positive, finite number (nan and inf are refused: they would break every limit they set)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise InvalidRequest(f"{option} takes a positive number of {unit}, not {value!r}")
    return number


def whole_number(option: str, value: int | str, low: int, high: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        allowed = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise InvalidRequest(f"{option} takes a whole number {allowed}, not {value!r}")
    return number


def check_port_free(host: str | None, port: int) -> None:
    """Bind the port for a moment, as Gradio will, so that a port in use is reported before the
    model loads (Gradio checks it again when it starts, and app.py reports that failure too)."""
    address = (host or "127.0.0.1").strip("[]")
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # As uvicorn does: connections still closing (TIME_WAIT) do not block a new server.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InvalidRequest(
                f"port {port} is already in use on {address}: stop the server that uses it, or choose another --port"
            ) from exc
        raise InvalidRequest(f"cannot listen on {address} port {port}: {exc.strerror or exc}") from exc


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """'user:password[,user2:password2]' -> [(user, password), ...]; None or '' -> no sign-in."""
    if not value or not value.strip():
        return None
    pairs = []
    for item in value.split(","):
        user, colon, password = item.strip().partition(":")
        if not colon or not user or not password:
            raise InvalidRequest(
                f"--auth (or {AUTH_VARIABLE}) takes user:password pairs separated by commas; got {item.strip()!r}"
            )
        pairs.append((user, password))
    return pairs


def check_share_reachable(timeout: float = 3.0, server: tuple[str, int] | None = None) -> None:
    """A share link needs Gradio's share server; without network, say so at once instead of
    letting Gradio try (and print a stack trace) after the model has loaded."""
    server = server or SHARE_SERVER
    try:
        with socket.create_connection(server, timeout=timeout):
            return
    except OSError as exc:
        raise InvalidRequest(
            f"--share needs internet access to {server[0]} to create a public gradio.live link, and it "
            f"cannot be reached ({exc.__class__.__name__}: {exc}). Run without --share and open the local "
            "address, or use --host 0.0.0.0 to serve on your network."
        ) from exc

"""How the web UI is served: sign-in, upload size, the queue, and public share links.

These are the `serve` options of app.py, checked before anything starts so a wrong value is a
clear message, not a half-started server.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from tasks.errors import InvalidRequest

AUTH_VARIABLE = "GRANITE_LONGDOC_AUTH"  # "user:password", several separated by commas
SHARE_SERVER = ("api.gradio.app", 443)  # where Gradio asks for a gradio.live tunnel
DEFAULT_MAX_FILE_MB = 50
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
        }


def serve_options(
    host: str | None,
    port: int | None,
    share: bool,
    auth: str | None,
    max_file_mb: float,
    max_queue: int,
    keep_minutes: float = DEFAULT_KEEP_MINUTES,
) -> ServeOptions:
    """Check the serve options (and, for --share, that the share server can be reached)."""
    if keep_minutes <= 0:
        raise InvalidRequest("--keep-files-minutes must be a positive number of minutes")
    if max_file_mb <= 0:
        raise InvalidRequest("--max-file-mb must be a positive number of megabytes")
    if max_queue < 1:
        raise InvalidRequest("--max-queue must be at least 1")
    credentials = parse_auth(auth if auth is not None else os.environ.get(AUTH_VARIABLE))
    if share:
        check_share_reachable()
    return ServeOptions(host, port, share, credentials, max_file_mb, max_queue, keep_minutes)


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

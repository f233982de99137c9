"""A clear answer when the server's disk is full, instead of a bare error that lasts.

Gradio writes each upload into its upload folder as it arrives. When the disk fills up, its upload
route fails with a bare 500 and leaves the partial file behind, which keeps the disk full, so every
later upload fails too. Two pieces fix that:

- `UploadSpaceGuard`, an ASGI middleware on POST .../gradio_api/upload, refuses an upload that
  cannot fit (the free space against its Content-Length plus a margin) with 507 and a plain-text
  message before anything is written, and turns a disk-full error during an upload into the same
  kind of answer. The page shows that text in its error toast ("HTTP 507: ...").
- `PartialFileCleaningParser` makes Gradio's multipart parser delete its partial files when writing
  fails, as it already does for malformed requests.

Also the small ASGI helpers that app.signin shares.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import shutil
from pathlib import Path

from gradio import route_utils, routes
from gradio.utils import get_upload_folder
from starlette.datastructures import FormData
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

UPLOAD_ROUTE = "/gradio_api/upload"
FREE_SPACE_MARGIN = 2**20  # bytes left free beyond the upload: file-system overhead, other writers
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
MAX_DRAIN_BYTES = 256 * 2**20  # a refused request is read (and dropped) up to this much, then cut off
WRITE_FAILED = (
    "Upload failed: the server ran out of disk space while saving the file, so nothing was kept. "
    "Try again later, or with a smaller file."
)


class UploadSpaceGuard:
    """ASGI middleware: 507 with a message for uploads that the disk cannot hold."""

    def __init__(self, app: ASGIApp, margin: int = FREE_SPACE_MARGIN) -> None:
        self.app = app
        self.margin = margin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(UPLOAD_ROUTE):
            await self.app(scope, receive, send)
            return
        shortage = space_shortage(get_upload_folder(), content_length(scope), self.margin)
        if shortage:
            logger.warning("upload refused: %s", shortage)
            if header(scope, b"expect").lower() != b"100-continue":  # else the body was never sent
                await drain(receive)
            await answer(send, 507, shortage)
            return
        await self._watched(scope, receive, send)

    async def _watched(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the upload on; a disk-full error before the answer has started becomes a 507."""
        started = body_read = False

        async def receive_watched() -> Message:
            nonlocal body_read
            message = await receive()
            body_read = body_read or message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_watched, send_watched)
        except OSError as exc:
            if exc.errno not in DISK_FULL or started:
                raise
            logger.warning("upload failed, the disk is full: %s", exc)
            if not body_read:  # (reading past the end would wait for the client to hang up)
                await drain(receive)
            await answer(send, 507, WRITE_FAILED)


def space_shortage(folder: str, length: int | None, margin: int) -> str | None:
    """Why an upload of `length` bytes (None: unknown) cannot be written into `folder` now, or None."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # not made yet: Gradio makes it on the first upload
        return None
    needed = (length or 0) + margin
    if free >= needed:
        return None
    return (
        f"Upload refused: the server is short of disk space ({_megabytes(free)} free, this upload needs "
        f"{_megabytes(needed)}). Try again later, or with a smaller file."
    )


def _megabytes(count: int) -> str:
    return f"{count / 2**20:,.1f} MB"


class PartialFileCleaningParser(route_utils.GradioMultiPartParser):
    """Gradio's multipart parser (gradio==6.31.0), which deletes the files of a request only when
    the request is malformed; this one also does when writing them fails (disk full, quota, I/O)."""

    async def parse(self) -> FormData:
        try:
            return await super().parse()
        except OSError:
            self.remove_partial_files()
            raise

    def remove_partial_files(self) -> None:
        # Gradio's own list of the temporary files this request opened. It is private, so the tests
        # check the behaviour: a Gradio release that renames it fails them.
        for file in self._files_to_close_on_error:
            with contextlib.suppress(OSError):  # flushing its buffer fails again on a full disk
                file.close()
            Path(file.name).unlink(missing_ok=True)


def install_upload_cleanup() -> None:
    """Make Gradio's routes parse uploads with `PartialFileCleaningParser`. Gradio offers no way to
    pass a parser; both modules look the name up at each request, so replacing it there is enough."""
    route_utils.GradioMultiPartParser = PartialFileCleaningParser
    routes.GradioMultiPartParser = PartialFileCleaningParser


def header(scope: Scope, name: bytes) -> bytes:
    """The first value of header `name` (lower case), or b""."""
    return next((value for key, value in scope["headers"] if key == name), b"")


def content_length(scope: Scope) -> int | None:
    value = header(scope, b"content-length")
    return int(value) if value.isdigit() else None


async def drain(receive: Receive, limit: int = MAX_DRAIN_BYTES) -> None:
    """Read and drop what is left of the request body before answering early: a browser still
    sending it would otherwise see the connection reset instead of the answer."""
    read = 0
    while read <= limit:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        read += len(message.get("body", b""))


async def answer(send: Send, status: int, body: str | dict, headers: dict[str, str] | None = None) -> None:
    """Send a whole response: a str as plain text, a dict as JSON."""
    as_json = isinstance(body, dict)
    data = (json.dumps(body) if as_json else body).encode("utf-8")
    kind = "application/json" if as_json else "text/plain; charset=utf-8"
    fields = {"content-type": kind, "content-length": str(len(data)), **(headers or {})}
    raw = [(key.encode("latin-1"), value.encode("latin-1")) for key, value in fields.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})

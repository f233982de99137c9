"""The command line's file inputs, checked before the model loads (which can take minutes, and a
run hours): the documents, the `--schema` file of `extract`, the `--plot` file of `check-context`.

A wrong one is an InvalidRequest or DocumentError (one `error: ...` line), never a traceback, a
hang on a pipe, or a failure at the end of a long run. Pure Python: no gradio.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from tasks.documents import check_file, display_name, file_error_reason
from tasks.errors import InvalidRequest

MAX_SCHEMA_BYTES = 2**20  # a JSON schema of a few fields is a few kB


def check_documents(paths: Sequence[str]) -> None:
    """Each document exists and is a regular file of a supported type and size (the loader's own
    check, which reads nothing)."""
    for path in paths:
        check_file(path)


def read_schema(value: str) -> str:
    """`--schema`'s value as JSON text: the value itself when it is a schema (an object, so it
    starts with `{`), else the contents of the file it names, a regular file of at most 1 MB."""
    if value.lstrip().startswith("{"):
        return value
    name = display_name(value)
    try:
        # Without blocking: opening a pipe (FIFO) that no one writes to would wait for ever.
        fd = os.open(value, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise InvalidRequest(f"--schema {name}: file not found (give a JSON file, or the schema itself)") from exc
    except (OSError, ValueError) as exc:  # a name too long, no permission
        raise InvalidRequest(f"--schema {name}: could not open the file ({file_error_reason(exc)})") from exc
    try:
        _check_schema_file(os.fstat(fd), name)  # what was opened: nothing can swap it after the check
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_SCHEMA_BYTES + 1)  # +1: a file that grew after the check is still caught
    finally:
        os.close(fd)
    if len(data) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(f"--schema {name}: the file is larger than {MAX_SCHEMA_BYTES // 2**20} MB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"--schema {name}: the file is not UTF-8 text") from exc


def _check_schema_file(info: os.stat_result, name: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise InvalidRequest(f"--schema {name}: this is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):  # a pipe or a device (/dev/zero) may never end
        raise InvalidRequest(f"--schema {name}: this is not a regular file")
    if info.st_size > MAX_SCHEMA_BYTES:
        raise InvalidRequest(
            f"--schema {name}: the file is {info.st_size / 2**20:,.1f} MB; the limit is {MAX_SCHEMA_BYTES // 2**20} MB"
        )


def check_plot(value: str) -> None:
    """`--plot` can be written: not a folder, nor a pipe or device; in a folder that exists and may
    be written to. Any name will do (the file is a PNG whatever its suffix)."""
    path = Path(value)
    name = display_name(value)
    try:
        if path.is_dir():
            raise InvalidRequest(f"--plot {name}: this is a folder; give a file name, such as {name}/needle.png")
        if not path.parent.is_dir():
            raise InvalidRequest(f"--plot {name}: the folder {display_name(str(path.parent))} does not exist")
        if path.exists() and not path.is_file():  # writing to a pipe would wait for a reader
            raise InvalidRequest(f"--plot {name}: this is not a regular file")
        if not os.access(path if path.exists() else path.parent, os.W_OK):
            raise InvalidRequest(f"--plot {name}: no permission to write this file")
    except (OSError, ValueError) as exc:  # a name too long for the file system
        raise InvalidRequest(f"--plot {name}: cannot write the file ({file_error_reason(exc)})") from exc

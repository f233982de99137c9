"""A finished result written as Markdown and JSON files for download, in a private folder of the
app's exports folder; old exports are deleted."""

from __future__ import annotations

import errno
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from app.files import app_folders, remove_stale
from app.results import (
    ResultView,
    conversation_markdown,
    json_text,
    result_markdown,
)

EXPORT_PREFIX = "export-"  # one folder per export, inside the app's exports folder (app.files)


def export_files(
    details: dict[str, Any] | None, keep_seconds: float | None = None, conversation: list[dict[str, Any]] | None = None
) -> tuple[str, str]:
    """Write a finished result as Markdown and as JSON into a fresh private folder inside the app's
    exports folder; return both paths. With a `conversation` (the results of an Ask thread, the
    last one `details`), the Markdown holds all of it. Exports older than `keep_seconds` are
    deleted first (Gradio serves its own copy)."""
    if not details or "task" not in details:
        raise gr.Error("run a task first: there is nothing to export yet", print_exception=False)
    if keep_seconds is not None:
        delete_old_exports(keep_seconds)
    folder = Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX, dir=app_folders().exports))
    view = ResultView.from_json(details)
    stem = _file_stem(f"{view.task}-{view.document}")
    markdown_path, json_path = folder / f"{stem}.md", folder / f"{stem}.json"
    try:
        markdown = (
            conversation_markdown([ResultView.from_json(turn) for turn in conversation]) if conversation else None
        )
        markdown_path.write_text(markdown or result_markdown(view), encoding="utf-8")
        json_path.write_text(json_text(details) + "\n", encoding="utf-8")
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)  # no half-written export left to fill the disk further
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise gr.Error("the server is out of disk space, so the export could not be written; try again "
                           "later", print_exception=False) from exc  # fmt: skip
        raise
    return str(markdown_path), str(json_path)


def delete_old_exports(keep_seconds: float) -> int:
    """Delete this app's export files older than `keep_seconds` (and the folders that this
    empties); return how many files went."""
    return remove_stale(app_folders().exports, keep_seconds)


def _file_stem(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text, flags=re.UNICODE).strip("-.")[:80] or "result"

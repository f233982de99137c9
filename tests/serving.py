"""Helpers for the serving tests: the real UI launched in this process with the serve options of
app.py, and files made to look old."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port


@contextmanager
def serving(engine, auth: str | None = None, keep_minutes: float = 60) -> Iterator:
    """Launch the UI as `python app.py` does (serve_options -> build_ui -> queue -> launch) on a free
    port; yield the Blocks (its `local_url` is the address); close it afterwards. Set
    GRADIO_TEMP_DIR first (monkeypatch) to keep its files in a folder of the test's own."""
    from app.launch import serve_options
    from app.ui import build_ui, launch_options
    from tasks.workbench import Workbench

    options = serve_options("127.0.0.1", free_port(), False, auth, 50, 16, keep_minutes)
    demo = build_ui(Workbench(engine, model_status="tiny-random (test)", demo_model=True), options.keep_seconds)
    demo.queue(**options.queue_kwargs())
    demo.launch(**options.launch_kwargs(), prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        yield demo
    finally:
        demo.close()


def write_old(path: Path, text: str = "left behind", seconds_ago: float = 86400) -> Path:
    """Write a file whose modification time lies `seconds_ago` in the past. Its change time (ctime)
    cannot be set: it is now, so the sweep counts it as old only once the keep time has passed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    then = time.time() - seconds_ago
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file() or path.is_symlink()}

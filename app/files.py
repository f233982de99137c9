"""The app's own folders for uploads and exports, and their clean-up.

Gradio deletes only the files that its running Blocks created, so files left by an earlier process
(killed, crashed, restarted) would stay for ever. The app therefore keeps its files in folders of its
own, `<base>/granite-longdoc-<uid>/uploads` and `.../exports` (base: `$GRADIO_TEMP_DIR` if the
operator set it, else the system's temporary folder), private to the user that runs it, and sweeps
them at start and every few minutes: every file older than the keep time goes, whoever wrote it.
Nothing outside these two folders is ever touched, and no symbolic link is followed.

Instances started by the same user with the same base share the folders (and sweep each other's
old files); give each instance its own `GRADIO_TEMP_DIR` to keep them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.errors import InvalidRequest

logger = logging.getLogger(__name__)

UPLOAD_VARIABLE = "GRADIO_TEMP_DIR"  # Gradio's upload folder; read when components and the App are built
ROOT_PREFIX = "granite-longdoc-"
UPLOADS, EXPORTS = "uploads", "exports"
MAX_SWEEP_INTERVAL = 300.0  # seconds


@dataclass(frozen=True)
class AppFolders:
    root: Path
    uploads: Path
    exports: Path


def app_folders() -> AppFolders:
    """The app's folders, created private (0o700) if missing. A folder that is a symbolic link, or
    belongs to another user, is refused: someone else could read or plant files there."""
    root = _root()
    root.parent.mkdir(parents=True, exist_ok=True)
    folders = AppFolders(root, root / UPLOADS, root / EXPORTS)
    for folder in (folders.root, folders.uploads, folders.exports):
        _private_folder(folder)
    return folders


def use_upload_folder(folders: AppFolders) -> None:
    """Make Gradio keep its uploads and cached files in the app's uploads folder. Call it before
    any component is built: Gradio reads the variable when each component and the App are made."""
    os.environ[UPLOAD_VARIABLE] = str(folders.uploads)


def _root() -> Path:
    name = f"{ROOT_PREFIX}{_user_id()}"
    configured = os.environ.get(UPLOAD_VARIABLE)
    if not configured:
        return Path(tempfile.gettempdir()) / name
    base = Path(configured)
    # After use_upload_folder the variable names our own uploads folder: the same root again, so
    # that every later call (exports, the periodic sweep) finds the same folders.
    if base.name == UPLOADS and base.parent.name == name:
        return base.parent
    return base / name


def _user_id() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")


def _private_folder(folder: Path) -> None:
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise InvalidRequest(
            f"{folder} is not a plain folder (a symbolic link or a file): the app will not keep uploads "
            f"there. Remove it, or set {UPLOAD_VARIABLE} to another folder."
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise InvalidRequest(
            f"{folder} belongs to another user (uid {info.st_uid}): the app will not keep uploads there. "
            f"Set {UPLOAD_VARIABLE} to a folder of your own."
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(folder, 0o700)


def sweep(folders: AppFolders, keep_seconds: float, keep: Collection[str] = (), now: float | None = None) -> int:
    """Delete the files in the uploads and exports folders that are older than `keep_seconds`,
    except the paths in `keep`, then the subfolders that this emptied. Returns how many files went."""
    return sum(remove_stale(folder, keep_seconds, keep, now) for folder in (folders.uploads, folders.exports))


def remove_stale(folder: Path, keep_seconds: float, keep: Collection[str] = (), now: float | None = None) -> int:
    """Delete the files under `folder` whose modification AND change times are both older than
    `keep_seconds` before `now`, except `keep`. A copy made with `shutil.copy2` (as Gradio copies the
    example documents into its cache) keeps its source's old mtime, but its ctime is new, so a
    fresh copy stays. Returns how many files went."""
    cutoff = (time.time() if now is None else now) - keep_seconds
    kept = frozenset(os.path.realpath(path) for path in keep)
    return _sweep_folder(os.path.realpath(folder), cutoff, kept)


def _stale(info: os.stat_result, cutoff: float) -> bool:
    return max(info.st_mtime, info.st_ctime) < cutoff


def _sweep_folder(folder: str, cutoff: float, kept: frozenset[str]) -> int:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    deleted = 0
    for entry in entries:
        path = os.path.join(folder, entry.name)  # never resolved: a link is removed, not followed
        try:
            if entry.is_dir(follow_symlinks=False):
                deleted += _sweep_subfolder(path, cutoff, kept)
            elif path not in kept and _stale(entry.stat(follow_symlinks=False), cutoff):
                os.unlink(path)
                deleted += 1
        except FileNotFoundError:  # removed meanwhile, by Gradio's own clean-up or another sweep
            continue
        except OSError as exc:
            logger.warning("could not delete %s: %s", path, exc)
    return deleted


def _sweep_subfolder(folder: str, cutoff: float, kept: frozenset[str]) -> int:
    # Only a subfolder that was already old before this sweep is removed once empty: Gradio makes a
    # fresh one just before it moves an upload into it.
    was_stale = _stale(os.lstat(folder), cutoff)
    deleted = _sweep_folder(folder, cutoff, kept)
    if was_stale:
        with contextlib.suppress(OSError):  # not empty (a file was kept or just arrived), or gone
            os.rmdir(folder)
    return deleted


def sweep_interval(keep_seconds: float) -> float:
    """How often to sweep: twice per keep time, at least once a second, at most every 5 minutes."""
    return max(1.0, min(MAX_SWEEP_INTERVAL, keep_seconds / 2))


def cached_examples(blocks: Any) -> set[str]:
    """The files a Blocks keeps in Gradio's cache for as long as it runs (the copies of the example
    documents), which Gradio's own clean-up also spares."""
    return {path for block in list(blocks.blocks.values()) for path in list(getattr(block, "keep_in_cache", ()))}


def sweeping(keep_seconds: float) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan for Gradio's App (`launch(app_kwargs={"lifespan": ...})`): while the server runs,
    sweep the app's folders every `sweep_interval(keep_seconds)` seconds, sparing the cached examples
    of the Blocks it serves."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(_sweep_forever(app, keep_seconds))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan


async def _sweep_forever(app: Any, keep_seconds: float) -> None:
    while True:
        await asyncio.sleep(sweep_interval(keep_seconds))
        try:
            examples = cached_examples(app.get_blocks())
            await asyncio.to_thread(sweep, app_folders(), keep_seconds, examples)
        except Exception:  # a failed sweep must not stop the next ones
            logger.exception("sweeping the upload and export folders failed")

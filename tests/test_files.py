"""The app's own upload and export folders, and the sweep that deletes old files in them, also those
left by an earlier process (killed, crashed), and nothing outside them."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from app.files import app_folders, cached_examples, sweep
from tasks.errors import InvalidRequest
from tests.conftest import app_py_serving
from tests.serving import files_under, serving, write_old

HOUR = 3600.0


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GRADIO_TEMP_DIR of the test's own: the app's folders go under it (and the variable, which
    the app sets to its uploads folder, is restored afterwards)."""
    folder = tmp_path / "base"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def test_the_folders_are_private_and_inside_the_operators_temp_dir(base):
    folders = app_folders()
    assert folders.root == base / f"granite-longdoc-{os.getuid()}"
    assert (folders.uploads, folders.exports) == (folders.root / "uploads", folders.root / "exports")
    for folder in (folders.root, folders.uploads, folders.exports):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    os.environ["GRADIO_TEMP_DIR"] = str(folders.uploads)  # as the app sets it for Gradio
    assert app_folders() == folders  # the same folders again


def test_a_folder_that_is_a_link_or_someone_elses_is_refused(base, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = base / f"granite-longdoc-{os.getuid()}"
    root.symlink_to(elsewhere)
    with pytest.raises(InvalidRequest, match="symbolic link"):
        app_folders()
    root.unlink()
    if os.geteuid() != 0:
        return  # only root can give a folder to another user
    root.mkdir()
    os.chown(root, 12345, 12345)
    with pytest.raises(InvalidRequest, match="another user"):
        app_folders()


def test_the_sweep_deletes_old_files_whoever_wrote_them_and_nothing_outside(base, tmp_path):
    folders = app_folders()
    left = [
        write_old(folders.uploads / "3f2a" / "report.pdf"),  # an upload of a killed process
        write_old(folders.uploads / "tmpk2j3h4"),  # a partial upload
        write_old(folders.exports / "export-abc" / "ask-report.md"),
    ]
    example = write_old(folders.uploads / "9c1d" / "northwind-annual-report.pdf")  # a running app's example
    sibling = write_old(base / "other-app" / "keep.txt")  # beside the app's folders, not in them
    outside = write_old(tmp_path / "outside" / "precious.txt")
    (folders.uploads / "link-to-file").symlink_to(outside)
    (folders.uploads / "link-to-folder").symlink_to(outside.parent, target_is_directory=True)

    # Their ctime is now (it cannot be set back), so they are not old yet: as a copy that
    # shutil.copy2 made just now (old mtime, new ctime), which must stay.
    assert sweep(folders, keep_seconds=60) == 0 and all(path.exists() for path in left)

    in_an_hour = time.time() + HOUR  # a stopped clock an hour ahead: every file is old then
    deleted = sweep(folders, keep_seconds=60, keep={str(example)}, now=in_an_hour)
    assert deleted == len(left) + 2  # and the two links, which are removed, never followed
    assert files_under(folders.root) == {example}
    assert not (folders.uploads / "3f2a").exists() and not (folders.exports / "export-abc").exists()
    assert folders.uploads.is_dir() and folders.exports.is_dir()
    assert outside.read_text(encoding="utf-8") == "left behind" and sibling.exists()


@pytest.mark.subprocess
def test_files_left_by_an_earlier_process_are_deleted_when_app_py_starts(base, tiny_checkpoint):
    folders = app_folders()
    left = [write_old(folders.uploads / "3f2a" / "report.pdf"), write_old(folders.exports / "export-1" / "a.json")]
    sibling = write_old(base / "other-app" / "keep.txt")
    time.sleep(3.5)  # their ctime too must be older than the keep time (3 s), and it cannot be set back
    with app_py_serving("--keep-files-minutes", "0.05"):  # GRADIO_TEMP_DIR is the test's own
        assert not any(path.exists() for path in left)
    assert sibling.exists()


def test_the_periodic_sweep_deletes_old_files_and_the_examples_still_load(base, tiny_engine):
    with serving(tiny_engine, keep_minutes=0.05) as demo:  # 3 seconds; a sweep every 1.5 s
        folders = app_folders()
        examples = files_under(folders.uploads)  # nothing was uploaded: the copies of the examples
        assert examples and {str(path) for path in examples} <= cached_examples(demo)
        planted = write_old(folders.uploads / "77aa" / "written-meanwhile.txt")  # by someone else
        for _ in range(200):
            if not planted.exists():
                break
            time.sleep(0.1)
        assert not planted.exists(), "the periodic sweep did not delete an old file"
        # The example copies are older still (made when the page was built, with the old mtime of
        # their source files): they survived that sweep and Gradio's own clean-up because the
        # running page keeps them.
        for path in examples:
            url = f"{demo.local_url}gradio_api/file={path}"
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200 and response.read() == Path(path).read_bytes()


def test_exports_work_with_the_folders_outside_the_system_temp_folder(tiny_engine, monkeypatch):
    from gradio_client import Client

    elsewhere = Path("/var/tmp")  # neither the system's temp folder nor the working directory
    if not os.access(elsewhere, os.W_OK):
        pytest.skip("/var/tmp is not writable here")
    base = Path(tempfile.mkdtemp(dir=elsewhere, prefix="granite-longdoc-test-"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(base))
    try:
        with serving(tiny_engine) as demo:
            markdown, data = Client(demo.local_url, verbose=False).predict(
                {"task": "ask", "text": "It opened in March."}, api_name="/export"
            )
        assert "It opened in March." in Path(markdown).read_text(encoding="utf-8")
        assert json.loads(Path(data).read_text(encoding="utf-8"))["task"] == "ask"
    finally:
        shutil.rmtree(base, ignore_errors=True)

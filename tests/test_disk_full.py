"""A full disk: an upload that cannot be stored gets 507 and a clear message, leaves no partial file
behind, and the same upload works again once there is space.

The main test fills a real file system: a 4 MiB tmpfs mounted for it (as root). Where mounting is
impossible it is skipped, and `test_a_failed_write_removes_the_partial_file` still checks the write
path by making Gradio's file writes raise ENOSPC.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.files import app_folders
from tests.serving import files_under, serving

MiB = 2**20
BOUNDARY = "granite-longdoc-test"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system of its own, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


def _upload(url: str, data: bytes, chunked: bool = False) -> httpx.Response:
    """POST one file to Gradio's upload route; `chunked` sends no Content-Length, so the size is
    not known before the file is written."""
    body, kind = _multipart("notes.txt", data)
    content = (body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)) if chunked else body
    return httpx.post(f"{url}gradio_api/upload", content=content, headers={"content-type": kind}, timeout=60)


def _fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves about `leave` bytes free on `disk`."""
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * max(0, shutil.disk_usage(disk).free - leave))
    return ballast


def test_an_upload_on_a_full_disk_is_refused_clearly_and_works_once_there_is_space(
    small_disk, tiny_engine, monkeypatch
):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(small_disk))
    data = b"The Berlin office opened in March.\n" * 80_000  # 2.7 MiB
    with serving(tiny_engine) as demo:
        uploads = app_folders().uploads
        before = files_under(uploads)  # the copies of the example documents
        ballast = _fill(small_disk, leave=int(1.5 * MiB))

        refused = _upload(demo.local_url, data)  # its size is known: refused before writing
        assert refused.status_code == 507
        assert "disk space" in refused.text and "MB free" in refused.text
        failed = _upload(demo.local_url, data, chunked=True)  # written until the disk is full
        assert failed.status_code == 507
        assert "ran out of disk space" in failed.text and "nothing was kept" in failed.text
        assert files_under(uploads) == before, "a partial upload was left behind"
        assert shutil.disk_usage(small_disk).free >= 1.4 * MiB

        ballast.unlink()
        for chunked in (False, True):
            stored = _upload(demo.local_url, data, chunked=chunked)
            assert stored.status_code == 200, stored.text
            (path,) = stored.json()
            assert Path(path).read_bytes() == data
            Path(path).unlink()  # room for the next one: the disk holds only one


def test_a_failed_write_removes_the_partial_file(tiny_engine, tmp_path, monkeypatch):
    # Without a small file system: Gradio's writes of uploaded data fail as on a full disk.
    from gradio import route_utils

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    written = route_utils.GradioUploadFile.write

    async def write_until_full(self, data: bytes) -> None:
        if self.size and self.size > MiB:
            raise OSError(errno.ENOSPC, "No space left on device")
        await written(self, data)

    with serving(tiny_engine) as demo:
        uploads = app_folders().uploads
        before = files_under(uploads)
        with monkeypatch.context() as patch:
            patch.setattr(route_utils.GradioUploadFile, "write", write_until_full)
            failed = _upload(demo.local_url, b"x" * (3 * MiB), chunked=True)
        assert failed.status_code == 507 and "ran out of disk space" in failed.text
        assert files_under(uploads) == before, "the partial upload was left behind"
        assert _upload(demo.local_url, b"x" * (3 * MiB), chunked=True).status_code == 200

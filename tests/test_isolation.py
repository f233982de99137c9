"""A shared server: many sessions at once, each with its own documents; no file outside the upload
and cache folders is ever served; uploads and exports are deleted after a set time."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.conftest import REPO_ROOT, free_port

SESSIONS = 8
CITIES = ("Berlin", "Lisbon", "Oslo", "Vienna", "Dublin", "Prague", "Madrid", "Warsaw")


@pytest.fixture(scope="module")
def server(tiny_engine, tmp_path_factory):
    from app.launch import serve_options
    from app.ui import build_ui, launch_options
    from tasks.workbench import Workbench

    with pytest.MonkeyPatch.context() as patch:
        # Files in a folder of its own: with a keep time of 3 seconds, its sweeps would delete the
        # files of any other app of this user that shares the default folder.
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("isolation")))
        options = serve_options("127.0.0.1", free_port(), False, None, 50, 16, keep_minutes=0.05)  # 3 seconds
        workbench = Workbench(tiny_engine, model_status="tiny-random (test)", demo_model=True)
        demo = build_ui(workbench, options.keep_seconds)
        demo.queue(**options.queue_kwargs())
        demo.launch(**options.launch_kwargs(), prevent_thread_lock=True, quiet=True, **launch_options())
        yield demo
        demo.close()


def _document(folder: Path, index: int) -> Path:
    city = CITIES[index]
    path = folder / f"office-{city.lower()}.txt"
    path.write_text(f"The {city} office opened in {2010 + index} with {20 + index} employees.", encoding="utf-8")
    return path


def test_eight_sessions_at_once_each_get_answers_about_their_own_document(server, tmp_path):
    documents = [_document(tmp_path, index) for index in range(SESSIONS)]

    def ask(index: int) -> dict:
        client = Client(server.local_url, verbose=False)  # its own session
        *_, details = client.predict([handle_file(str(documents[index]))], f"When did the {CITIES[index]} office open?",
                                     "auto", 8, 0.0, "auto", 0, api_name="/ask")  # fmt: skip
        return details

    with ThreadPoolExecutor(SESSIONS) as pool:
        results = list(pool.map(ask, range(SESSIONS)))
    for index, details in enumerate(results):
        own = documents[index].name
        assert details["document"]["name"] == own
        assert details["question"] == f"When did the {CITIES[index]} office open?"
        assert {source["document"] for source in details["sources"]} == {own}
        quoted = " ".join(source["text"] for source in details["sources"])
        assert CITIES[index] in quoted and not any(city in quoted for city in CITIES if city != CITIES[index])


TRAVERSALS = (
    "/gradio_api/file=/etc/passwd",
    "/gradio_api/file=../../../../etc/passwd",
    "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/gradio_api/file=..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/file=/etc/passwd",
    "/gradio_api/file=app.py",
    "/gradio_api/file={repo}/app.py",
    "/gradio_api/file={repo}/model/loader.py",
    "/gradio_api/file={home}/.bashrc",
    "/static/../../../../etc/passwd",
    "/assets/../../../../etc/passwd",
    "/gradio_api/file=/proc/self/environ",
)


@pytest.mark.parametrize("route", TRAVERSALS)
def test_no_file_outside_the_upload_and_cache_folders_is_served(server, route):
    path = route.format(repo=REPO_ROOT, home=os.path.expanduser("~"))
    status, body = _get(server.local_url.rstrip("/") + path)
    assert status in (403, 404) and not _leaks(body), f"{path} answered {status}"


def test_an_uploaded_file_is_served_back_but_its_neighbours_are_not(server, tmp_path):
    upload = _document(tmp_path, 0)
    client = Client(server.local_url, verbose=False)
    card, _ = client.predict([handle_file(str(upload))], "auto", 0, api_name="/info")
    assert "office-berlin.txt" in card
    cached = _newest_upload(upload.name)
    status, body = _get(f"{server.local_url.rstrip('/')}/gradio_api/file={cached}")
    assert status == 200 and b"Berlin office" in body
    sibling = f"{cached.parent}/../../../../etc/passwd"
    status, body = _get(f"{server.local_url.rstrip('/')}/gradio_api/file={urllib.parse.quote(sibling)}")
    assert status >= 400 or not _leaks(body)


EVIL_NAMES = ("../../../../tmp/granite-evil.txt", "..\\..\\granite-evil.txt", "/tmp/granite-evil.txt")


@pytest.mark.parametrize("name", EVIL_NAMES)
def test_an_upload_named_like_a_path_stays_in_the_upload_folder(server, name):
    import httpx
    from gradio.utils import get_upload_folder

    response = httpx.post(
        server.local_url.rstrip("/") + "/gradio_api/upload", files={"files": (name, b"evil", "text/plain")}, timeout=10
    )
    assert response.status_code == 200
    (stored,) = response.json()
    upload_folder = Path(get_upload_folder()).resolve()
    assert Path(stored).resolve().is_relative_to(upload_folder), stored
    assert not Path("/tmp/granite-evil.txt").exists()


def test_uploads_and_exports_are_deleted_after_the_configured_time(server, tmp_path):
    from app.exports import EXPORT_PREFIX
    from app.files import app_folders

    upload = _document(tmp_path, 1)
    client = Client(server.local_url, verbose=False)
    *_, details = client.predict([handle_file(str(upload))], "When?", "auto", 4, 0.0, "auto", 0, api_name="/ask")
    cached = _newest_upload(upload.name)
    client.predict(details, api_name="/export")
    exports = list(app_folders().exports.glob(f"{EXPORT_PREFIX}*/ask-office-lisbon.txt.md"))
    assert cached.exists() and exports
    deadline = time.monotonic() + 30
    while cached.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not cached.exists(), "the upload was not deleted after the configured time"
    client.predict(details, api_name="/export")  # a later export clears the old export folders
    assert not any(path.exists() for path in exports), "old export files were not deleted"


def _newest_upload(name: str) -> Path:
    from gradio.utils import get_upload_folder

    found = sorted(Path(get_upload_folder()).rglob(name), key=lambda path: path.stat().st_mtime)
    assert found, f"{name} was not found in Gradio's upload folder"
    return found[-1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _leaks(body: bytes) -> bool:
    markers = (b"root:x:0:0", b"def load_model", b"Granite Long-Doc: the entry point", b"HF_HUB", b"PATH=")
    return any(marker in body for marker in markers)

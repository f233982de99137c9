"""Shared fixtures. Nothing downloads: the hub is switched off before any library is imported."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes import FakeEngine
from tests.pdfs import PdfFactory

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache folder for this test run; subprocesses get it through the environment."""
    root = tmp_path_factory.mktemp("model-cache")
    os.environ["GRANITE_LONGDOC_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(model_cache: Path) -> Path:
    from model.checkpoints import tiny_random_path

    return tiny_random_path(model_cache)


@pytest.fixture(scope="session")
def tiny_loaded(tiny_checkpoint: Path):
    from model.loader import load_model
    from model.runtime import Runtime

    return load_model("tiny-random", Runtime("cpu", "float32", "none"))


@pytest.fixture(scope="session")
def tiny_stock(tiny_checkpoint: Path):
    """The tiny model exactly as transformers loads it (no packed weights, no fast path): the
    reference the engine is compared with."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype="float32").eval()


@pytest.fixture(scope="session")
def tiny_engine(tiny_loaded):
    from model.engine import Engine

    return Engine(tiny_loaded)


@pytest.fixture
def tiny_workbench(tiny_engine):
    from tasks.workbench import Workbench

    return Workbench(tiny_engine, model_status="tiny-random (test)", demo_model=True)


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def pdfs(tmp_path: Path) -> PdfFactory:
    return PdfFactory(tmp_path)


@dataclass(frozen=True)
class CliRun:
    """What one run of the command line gave: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """cli(*argv): run `python app.py ARGV` in this process (`app.cli.main`), with its exit status
    and output as the shell would get them, without a new Python process for each run."""
    from app.cli import main

    def run(*argv: str) -> CliRun:
        capsys.readouterr()  # only this run's output
        status = main(list(argv))
        out, err = capsys.readouterr()
        return CliRun(status, out, err)

    return run


def run_app_py(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python app.py ARGS` as its own process, as a shell does (for the tests where the process
    itself is the point; mark them `subprocess`)."""
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def app_py_serving(*args: str, timeout: float = 120, bare: bool = False) -> Iterator[str]:
    """Start `python app.py --model tiny-random ARGS` on a free port as a user would; yield its URL
    once it answers HTTP; stop it afterwards. With `bare`, `python app.py ARGS` as Hugging Face
    Spaces starts it (the port comes from GRADIO_SERVER_PORT)."""
    port = free_port()
    options = [] if bare else ["--model", "tiny-random", "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, "app.py", *options, *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_SERVER_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while not _answers(url):
            if server.poll() is not None:
                raise AssertionError(f"app.py exited early:\n{server.stdout.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("app.py did not start serving in time")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False

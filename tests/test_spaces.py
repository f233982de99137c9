"""Hugging Face Spaces: the README front matter and ZeroGPU's `@spaces.GPU`."""

import sys
import types

import gradio

from app.gpu import BASE_SECONDS, MAX_SECONDS, gpu_seconds, on_spaces_gpu
from tests.conftest import REPO_ROOT


def test_readme_front_matter_describes_the_space():
    front = REPO_ROOT.joinpath("README.md").read_text(encoding="utf-8").split("---")[1]
    fields = dict(line.split(": ", 1) for line in front.strip().splitlines() if ": " in line)
    assert fields["sdk"] == "gradio" and fields["app_file"] == "app.py"
    assert fields["sdk_version"] == gradio.__version__  # the version the tests ran with
    assert "suggested_hardware" in fields
    assert "  - ibm-granite/granite-3.1-1b-a400m-base" in front


def test_without_the_spaces_package_handlers_are_unchanged(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError

    def handler():
        return "ran"

    assert on_spaces_gpu(handler) is handler


def test_with_the_spaces_package_handlers_run_under_spaces_gpu(monkeypatch, tmp_path):
    seen = {}

    def gpu(duration):
        def decorate(function):
            def wrapped(*args, **kwargs):
                seen["seconds"] = duration(*args, **kwargs)
                return function(*args, **kwargs)

            return wrapped

        return decorate

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text("x" * 1000)
    large.write_bytes(b"x" * 5 * 2**20)
    handler = on_spaces_gpu(lambda documents, *rest: f"{len(documents)} documents")
    assert handler([str(small)], "auto") == "1 documents" and seen["seconds"] == BASE_SECONDS
    assert handler([str(small), str(large)], "auto") == "2 documents" and seen["seconds"] > BASE_SECONDS + 100
    assert gpu_seconds([str(large)] * 100) == MAX_SECONDS and gpu_seconds(None) == BASE_SECONDS

"""The command line, run as a user runs it: `python app.py ...` in a subprocess."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def run_app(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="module")
def report_pdf(tmp_path_factory, tiny_checkpoint):
    from tests.pdfs import PdfFactory

    return str(PdfFactory(tmp_path_factory.mktemp("cli")).report())


def test_summarize_json(report_pdf):
    done = run_app("--model", "tiny-random", "summarize", report_pdf, "--json", "--max-new-tokens", "32")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["task"] == "summarize" and result["strategy"] == "full"
    assert result["text"].strip()
    assert result["document"]["name"] == "report.pdf" and result["document"]["pages"] == 3
    assert result["document"]["tokens"] > 0
    assert result["timings"]["total_seconds"] > 0


def test_ask_streams_plain_text_with_options_after_the_command(report_pdf):
    done = run_app("ask", report_pdf, "What was the revenue?", "--model", "tiny-random", "--max-new-tokens", "16")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "strategy full" in done.stderr and "demo model" in done.stderr


def test_info_json(report_pdf):
    done = run_app("--model", "tiny-random", "info", report_pdf, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["task"] == "info" and info["strategy"] == "full" and info["fits"] is True
    assert info["document"]["pages"] == 3 and info["document"]["tokens"] > 0
    assert info["budget"] == 8192


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "tiny-random", "summarize", "missing.pdf"], "missing.pdf: file not found"),
        (["--model", "tiny-random", "--quant", "4bit", "summarize", "x.pdf"], "needs a CUDA GPU"),
        (["--model", "tiny-random", "--context-budget", "300", "summarize", "{pdf}"], "longer than the context"),
        (["--model", "tiny-random", "ask", "{pdf}", " "], "type a question"),
        (["summarize", "{pdf}"], "--model tiny-random"),  # the default hub model, offline
    ],
)
def test_errors_are_one_line_and_exit_2(report_pdf, args, message):
    done = run_app(*[a.replace("{pdf}", report_pdf) for a in args])
    assert done.returncode == 2
    assert "error: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr

"""The command line, run as a user runs it: `python app.py ...` in a subprocess."""

import importlib.util
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


def test_prompt_json(report_pdf):
    done = run_app("--model", "tiny-random", "prompt", report_pdf, "List the key figures.", "--json",
                   "--max-new-tokens", "16")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["task"] == "custom" and result["strategy"] == "full"
    assert result["prompt"] == "List the key figures." and result["sources"]
    assert result["document"]["name"] == "report.pdf" and result["usage"]["generated_tokens"] <= 16


def test_info_json(report_pdf):
    done = run_app("--model", "tiny-random", "info", report_pdf, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["task"] == "info" and info["strategy"] == "full" and info["fits"] is True
    assert info["document"]["pages"] == 3 and info["document"]["tokens"] > 0
    assert info["budget"] == 8192 and info["language"] == "en" and info["expected_wait"]
    assert info["strategies"] == {"summarize": "full", "ask": "full", "extract": "full", "classify": "full",
                                  "custom": "full"}  # fmt: skip


def test_info_of_a_long_document_names_the_long_strategies(report_pdf):
    done = run_app("--model", "tiny-random", "--context-budget", "512", "info", report_pdf, report_pdf, report_pdf,
                   "--json")  # fmt: skip
    info = json.loads(done.stdout)
    assert info["strategies"]["summarize"] == "map-reduce" and info["strategies"]["ask"] == "retrieval"
    assert info["strategies"]["custom"] == "retrieval"
    assert info["name"] == "report.pdf, report.pdf (2), report.pdf (3)"


def test_text_prints_normalized_pages(report_pdf):
    done = run_app("text", report_pdf)
    assert done.returncode == 0, done.stderr
    assert "[Page 1]" in done.stdout and "[Page 3]" in done.stdout and "4.2 million euros" in done.stdout


def test_extract_and_classify_json(report_pdf):
    done = run_app("--model", "tiny-random", "extract", report_pdf, "--fields", "company,revenue", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["data"]) == {"company", "revenue"} and result["sources"]
    done = run_app("--model", "tiny-random", "classify", report_pdf, "--labels", "report,invoice,letter", "--json")
    result = json.loads(done.stdout)
    assert sum(row["probability"] for row in result["labels"]) == pytest.approx(1.0, abs=1e-5)
    assert result["text"] in ("report", "invoice", "letter")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "tiny-random", "summarize", "missing.pdf"], "missing.pdf: file not found"),
        (["--model", "tiny-random", "--quant", "4bit", "summarize", "{pdf}"], "needs a CUDA GPU"),
        (["--model", "tiny-random", "--context-budget", "300", "summarize", "{pdf}"], "at least 512 tokens"),
        (
            [
                "--model",
                "tiny-random",
                "--context-budget",
                "512",
                "summarize",
                "{pdf}",
                "--strategy",
                "full",
                "--max-new-tokens",
                "400",
            ],
            "longer than the context budget",
        ),
        (["--model", "tiny-random", "extract", "{pdf}", "--schema", "{not json"], "not valid JSON"),
        (["--model", "tiny-random", "classify", "{pdf}", "--labels", "only-one"], "at least two labels"),
        (["--model", "tiny-random", "ask", "{pdf}", " "], "type a question"),
        (["--model", "tiny-random", "prompt", "{pdf}", " "], "type an instruction"),
        (["summarize", "{pdf}"], "--model tiny-random"),  # the default hub model, offline
    ],
)
def test_errors_are_one_line_and_exit_2(report_pdf, args, message):
    done = run_app(*[a.replace("{pdf}", report_pdf) for a in args])
    assert done.returncode == 2
    assert "error: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


def load_app_module():
    spec = importlib.util.spec_from_file_location("granite_app_main", REPO_ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_model_offline_leaves_a_workbench_that_explains_itself():
    app_main = load_app_module()
    workbench = app_main.build_workbench(app_main.build_parser().parse_args([]))
    assert workbench.engine is None
    assert "not loaded" in workbench.model_status
    assert "--model PATH" in workbench.unavailable_reason and "--model tiny-random" in workbench.unavailable_reason


def test_model_options_work_before_and_after_the_command():
    parser = load_app_module().build_parser()
    before = parser.parse_args(["--model", "tiny-random", "--quant", "fp32", "summarize", "a.pdf"])
    after = parser.parse_args(["summarize", "a.pdf", "--model", "tiny-random", "--quant", "fp32"])
    neither = parser.parse_args(["summarize", "a.pdf"])
    assert (before.model, before.quant) == (after.model, after.quant) == ("tiny-random", "fp32")
    # No --model means the real model in process (or, with --backend openai, the served model's tokenizer).
    assert (neither.model, neither.quant, neither.device, neither.backend) == (None, "auto", "auto", "transformers")
    server = ["--backend", "openai", "--base-url", "http://gpu-box:8000/v1", "--served-model", "granite"]
    before, after = (
        parser.parse_args([*server, "ask", "a.pdf", "Why?"]),
        parser.parse_args(["ask", "a.pdf", "Why?", *server]),
    )
    assert (before.backend, before.base_url, before.served_model) == (after.backend, after.base_url, after.served_model)
    assert after.backend == "openai" and after.base_url == "http://gpu-box:8000/v1" and after.served_model == "granite"

"""The command line: `python app.py ...` run in this process through `app.cli.main` (the `cli`
fixture), and as its own process where the process is the point (`subprocess`)."""

import json
import urllib.request

import pytest

from app.cli_parser import build_parser, model_settings
from app.setup import build_workbench
from tests.conftest import app_py_serving, run_app_py


@pytest.fixture(scope="module")
def report_pdf(tmp_path_factory, tiny_checkpoint):
    from tests.pdfs import PdfFactory

    return str(PdfFactory(tmp_path_factory.mktemp("cli")).report())


def test_summarize_json(cli, report_pdf):
    done = cli("--model", "tiny-random", "summarize", report_pdf, "--json", "--max-new-tokens", "32")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["task"] == "summarize" and result["strategy"] == "full"
    assert result["text"].strip()
    assert result["document"]["name"] == "report.pdf" and result["document"]["pages"] == 3
    assert result["document"]["tokens"] > 0
    assert result["timings"]["total_seconds"] > 0


def test_ask_streams_plain_text_with_options_after_the_command(cli, report_pdf):
    done = cli("ask", report_pdf, "What was the revenue?", "--model", "tiny-random", "--max-new-tokens", "16")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "strategy: whole document" in done.stderr and "demo model" in done.stderr
    assert "[source: report.pdf, page" in done.stderr


def test_custom_json_and_its_old_name_prompt(cli, report_pdf):
    for command in ("custom", "prompt"):
        done = cli("--model", "tiny-random", command, report_pdf, "List the revenue figures.", "--json",
                   "--max-new-tokens", "16")  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["task"] == "custom" and result["strategy"] == "full"
        assert result["prompt"] == "List the revenue figures." and result["sources"]
        assert result["document"]["name"] == "report.pdf" and result["usage"]["generated_tokens"] <= 16


def test_info_json(cli, report_pdf):
    done = cli("--model", "tiny-random", "info", report_pdf, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["task"] == "info" and info["strategy"] == "full" and info["fits"] is True
    assert info["document"]["pages"] == 3 and info["document"]["tokens"] > 0
    assert info["budget"] == 8192 and info["language"] == "en" and info["expected_wait"]
    assert info["strategies"] == {"summarize": "full", "ask": "full", "extract": "full", "classify": "full",
                                  "custom": "full"}  # fmt: skip


def test_info_of_a_long_document_names_the_long_strategies(cli, report_pdf):
    done = cli("--model", "tiny-random", "--context-budget", "1024", "info", report_pdf, report_pdf, report_pdf,
               "--json")  # fmt: skip
    info = json.loads(done.stdout)
    assert info["strategies"]["summarize"] == "map-reduce" and info["strategies"]["ask"] == "retrieval"
    assert info["strategies"]["custom"] == "retrieval"
    assert info["name"] == "report.pdf, report.pdf (2), report.pdf (3)"


def test_text_prints_normalized_pages(cli, report_pdf):
    done = cli("text", report_pdf)
    assert done.returncode == 0, done.stderr
    assert "[Page 1]" in done.stdout and "[Page 3]" in done.stdout and "4.2 million euros" in done.stdout


def test_extract_and_classify_json(cli, report_pdf):
    done = cli("--model", "tiny-random", "extract", report_pdf, "--fields", "company,revenue", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["data"]) == {"company", "revenue"} and result["sources"]
    done = cli("--model", "tiny-random", "classify", report_pdf, "--labels", "report,invoice,letter", "--json")
    result = json.loads(done.stdout)
    assert sum(row["probability"] for row in result["labels"]) == pytest.approx(1.0, abs=1e-5)
    assert result["text"] in ("report", "invoice", "letter")


def test_classify_prints_every_label_with_its_probability(cli, report_pdf):
    done = cli("--model", "tiny-random", "classify", report_pdf, "--labels", "report,invoice,letter")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()]
    assert sorted(label for _, label in rows) == ["invoice", "letter", "report"]
    assert sum(float(share.rstrip("%")) for share, _ in rows) == pytest.approx(100, abs=0.05)
    assert "strategy: whole document" in done.stderr


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
        (["--model", "tiny-random", "custom", "{pdf}", " "], "type an instruction"),
        (["summarize", "{pdf}"], "--model tiny-random"),  # the default hub model, offline
    ],
)
def test_errors_are_one_line_and_exit_2(cli, report_pdf, args, message):
    done = cli(*[a.replace("{pdf}", report_pdf) for a in args])
    assert done.returncode == 2
    assert "error: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_is_one_line_and_exit_130(cli, report_pdf, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("app.cli.build_workbench", interrupted)
    done = cli("--model", "tiny-random", "summarize", report_pdf)
    assert done.returncode == 130 and done.stderr.strip() == "cancelled" and done.stdout == ""


def test_default_model_offline_leaves_a_workbench_that_explains_itself():
    workbench = build_workbench(model_settings(build_parser().parse_args([])))
    assert workbench.engine is None
    assert "not loaded" in workbench.model_status
    assert "--model PATH" in workbench.unavailable_reason and "--model tiny-random" in workbench.unavailable_reason


def test_model_options_work_before_and_after_the_command():
    parser = build_parser()
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


def test_typed_choices_come_from_the_literal_types():
    from typing import get_args

    from app.setup import Backend
    from model.runtime import DeviceSetting, QuantSetting
    from tasks.budget import StrategySetting

    parser = build_parser()
    for option, literal in (("--quant", QuantSetting), ("--device", DeviceSetting), ("--backend", Backend)):
        for value in get_args(literal):
            assert getattr(model_settings(parser.parse_args([option, value])), option[2:]) == value
    for value in get_args(StrategySetting):
        assert parser.parse_args(["summarize", "a.pdf", "--strategy", value]).strategy == value


@pytest.mark.subprocess
def test_the_shell_gets_the_output_and_the_exit_status(report_pdf):
    done = run_app_py("text", report_pdf)
    assert done.returncode == 0, done.stderr
    assert "[Page 1]" in done.stdout and "4.2 million euros" in done.stdout
    done = run_app_py("--model", "tiny-random", "summarize", "missing.pdf")
    assert done.returncode == 2 and done.stderr == "error: missing.pdf: file not found\n" and done.stdout == ""


@pytest.mark.subprocess
def test_python_app_py_without_arguments_serves_the_web_ui(tiny_checkpoint):
    """What Hugging Face Spaces runs: no arguments; offline, the default model does not load, and
    the UI says so and serves the document tools."""
    with app_py_serving(bare=True) as url, urllib.request.urlopen(url + "config", timeout=30) as response:
        config = response.read().decode()
    assert "app.unavailable" in config and "(not loaded)" in config  # the sentence, translated in the browser

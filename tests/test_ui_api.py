"""The Gradio app served on a free local port and driven through gradio_client."""

import json
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.conftest import app_py_serving, free_port


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from tests.pdfs import PdfFactory

    return PdfFactory(tmp_path_factory.mktemp("ui")).report()


@pytest.fixture(scope="module")
def served(tiny_engine):
    """The UI of a tiny-random workbench, launched in this process."""
    from app.ui import build_ui, launch_options
    from tasks.workbench import Workbench

    demo = build_ui(Workbench(tiny_engine, model_status="tiny-random (test)", demo_model=True))
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True, **launch_options())
    yield Client(demo.local_url, verbose=False)
    demo.close()


def files(*paths):
    return [handle_file(str(path)) for path in paths]


def test_summarize_streams_through_the_api(served, report):
    job = served.submit(files(report), "auto", 48, 0.0, "auto", 0, api_name="/summarize")
    text, status, _sources, details = job.result(timeout=120)
    updates = job.outputs()
    assert len(updates) > 3  # progress, then growing text, then the result
    assert any(0 < len(u[0]) < len(text) for u in updates)  # partial text was streamed
    assert text and details["text"] == text
    assert details["strategy"] == "full" and details["document"]["pages"] == 3
    assert "Done" in status and "meaningless" in status


def test_ask_through_the_api(served, report):
    text, _status, sources, details = served.predict(
        files(report), "When did the Berlin office open?", "de", 24, 0.0, "auto", 0, api_name="/ask"
    )
    assert text
    assert details["task"] == "ask" and details["question"] == "When did the Berlin office open?"
    assert details["language"] == "de"
    assert details["sources"] and "report.pdf, page" in sources


def test_ask_across_two_documents_with_retrieval(served, report, tmp_path):
    other = tmp_path / "memo.txt"
    other.write_text("The Lisbon warehouse closed in June 2023 after the flood.", encoding="utf-8")
    *_, details = served.predict(files(report, other), "When did the Lisbon warehouse close?", "auto", 16, 0.0,
                                 "retrieval", 0, api_name="/ask")  # fmt: skip
    assert details["strategy"] == "retrieval"
    assert details["sources"][0]["document"] == "memo.txt" and details["sources"][0]["pages"] == [1]


def test_extract_through_the_api(served, report):
    text, _status, _sources, details = served.predict(
        files(report), "company, revenue", "", "auto", 200, 0.0, "auto", 0, api_name="/extract"
    )
    assert json.loads(text) == details["data"] and set(details["data"]) == {"company", "revenue"}


def test_classify_through_the_api(served, report):
    label, _status, details = served.predict(files(report), "report, invoice, contract", "auto", 16, 0.0, "auto", 0,
                                             api_name="/classify")  # fmt: skip
    assert label["label"] in ("report", "invoice", "contract")
    assert sum(row["probability"] for row in details["labels"]) == pytest.approx(1.0, abs=1e-5)


def test_info_through_the_api(served, report, tmp_path):
    card, data = served.predict(files(report), "auto", 0, api_name="/info")
    assert "report.pdf" in card and "3 pages" in card and "language: en" in card and 'class="gauge fits"' in card
    assert data["tokens"] > 0 and data["fits"] is True and data["strategies"]["ask"] == "full"
    assert data["strategies"]["custom"] == "full" and len(data["documents"]) == 1
    other = tmp_path / "notes.txt"
    other.write_text("Die Sitzung begann um neun Uhr. Der Bericht wurde angenommen.", encoding="utf-8")
    card, data = served.predict(files(report, other), "auto", 0, api_name="/info")
    assert card.count('class="doc-card"') == 3  # one per document, and the two together
    assert "notes.txt" in card
    assert [d["language"] for d in data["documents"]] == ["en", "de"]
    assert data["tokens"] >= sum(d["tokens"] for d in data["documents"])
    # The card plans with the panel's answer length, as the task will: 900 of 1,024 leave no whole document
    _card, planned = served.predict(files(report), "auto", 1024, "", 900, "auto", api_name="/info")
    assert planned["strategies"]["summarize"] == "map-reduce" and planned["fits"] is False


def test_custom_prompt_through_the_api(served, report):
    text, status, sources, details = served.predict(
        files(report), "List the revenue figures.", "auto", 24, 0.0, "auto", 0, api_name="/custom"
    )
    assert text and details["task"] == "custom" and details["prompt"] == "List the revenue figures."
    assert "Done" in status and "report.pdf, page" in sources
    with pytest.raises(Exception, match="type an instruction"):
        served.predict(files(report), " ", "auto", 24, 0.0, "auto", 0, api_name="/custom")


def test_export_through_the_api(served, report):
    *_, details = served.predict(files(report), "Revenue?", "auto", 8, 0.0, "auto", 0, api_name="/ask")
    markdown_path, json_path = served.predict(details, api_name="/export")
    assert json.loads(Path(json_path).read_text(encoding="utf-8")) == details
    markdown = Path(markdown_path).read_text(encoding="utf-8")
    assert markdown.startswith("# Ask: report.pdf") and "**Question:** Revenue?" in markdown
    assert "## Sources" in markdown and "report.pdf, page" in markdown
    with pytest.raises(Exception, match="nothing to export"):
        served.predict({}, api_name="/export")


def test_errors_reach_the_client_as_messages(served, report, tmp_path):
    with pytest.raises(Exception, match="type a question"):
        served.predict(files(report), "  ", "auto", 24, 0.0, "auto", 0, api_name="/ask")
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(b"GIF89a not a pdf")
    with pytest.raises(Exception, match="not a PDF file"):
        served.predict(files(fake), "auto", 24, 0.0, "auto", 0, api_name="/summarize")
    with pytest.raises(Exception, match="summarize cannot use the retrieval strategy"):
        served.predict(files(report), "auto", 24, 0.0, "retrieval", 0, api_name="/summarize")
    # the server is still serving after the errors
    assert served.predict(files(report), "Revenue?", "auto", 8, 0.0, "auto", 0, api_name="/ask")[0]


def test_a_crash_inside_the_model_is_reported_and_the_server_lives_on(served, report, tiny_engine):
    def explode(module, args):
        raise RuntimeError("boom inside the model")

    handle = tiny_engine.model.layers[0].register_forward_pre_hook(explode)
    try:
        with pytest.raises(Exception, match="RuntimeError: boom inside the model"):
            served.predict(files(report), "auto", 8, 0.0, "auto", 0, api_name="/summarize")
    finally:
        handle.remove()
    assert served.predict(files(report), "auto", 8, 0.0, "auto", 0, api_name="/summarize")[0]


def test_cancel_frees_the_model_for_the_next_request(served, report, tiny_engine):
    job = served.submit(files(report), "auto", 4096, 0.0, "auto", 0, api_name="/summarize")
    while len(job.outputs()) < 3:
        time.sleep(0.05)
    passes = []  # the model's forward passes from the cancel on: work, not seconds
    handle = tiny_engine.model.layers[0].register_forward_pre_hook(lambda module, args: passes.append(1))
    try:
        job.cancel()
        ask = served.submit(files(report), "Revenue?", "auto", 8, 0.0, "auto", 0, api_name="/ask")
        text = ask.result(timeout=120)[0]  # the timeout guards against a hang
    finally:
        handle.remove()
    assert text
    # The question's prefill and 8 tokens, and the few steps the summary took before it saw the
    # cancel; had it run on, its 4,096 tokens would have come first.
    assert len(passes) < 200, f"{len(passes)} forward passes: the cancelled summary went on"


def test_stop_ends_the_task_and_keeps_what_was_written(served, report, tiny_engine):
    # 50 ms a forward pass: Stop comes long before tiny-random's greedy text could loop (a loop
    # would end the summary by itself, tasks/endings.py).
    handle = tiny_engine.model.layers[0].register_forward_pre_hook(lambda module, args: time.sleep(0.05))
    try:
        job = served.submit(files(report), "auto", 4096, 0.0, "auto", 0, api_name="/summarize")
        while len(job.outputs()) < 4:
            time.sleep(0.05)
        served.predict(api_name="/stop_summarize")
        text, status, _sources, details = job.result(timeout=60)
    finally:
        handle.remove()
    assert details["finish_reason"] == "cancelled" and "stopped" in status
    assert 0 < details["usage"]["generated_tokens"] < 4096
    assert text == details["text"]


def test_generation_unavailable_is_explained(report):
    from app.ui import build_ui
    from tasks.workbench import Workbench

    demo = build_ui(Workbench(model_status="x (not loaded)", unavailable_reason="the hub is unreachable"))
    demo.queue()
    demo.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        card, _ = client.predict(files(report), "auto", 0, api_name="/info")
        assert "3 pages" in card and "the hub is unreachable" in card
        with pytest.raises(Exception, match="generation is unavailable: the hub is unreachable"):
            client.predict(files(report), "auto", 16, 0.0, "auto", 0, api_name="/summarize")
    finally:
        demo.close()


@pytest.mark.subprocess
def test_app_py_serves_the_endpoints(report, tiny_checkpoint):
    """`python app.py --model tiny-random` as a user starts it, then one API call per task."""
    with app_py_serving() as url:
        client = Client(url, verbose=False)
        summary = client.predict(files(report), "auto", 16, 0.0, "auto", 0, api_name="/summarize")
        answer = client.predict(files(report), "What grew?", "auto", 16, 0.0, "auto", 0, api_name="/ask")
        assert summary[0] and summary[3]["task"] == "summarize"
        assert answer[0] and answer[3]["task"] == "ask"


def test_every_task_has_a_named_endpoint(served):
    named = set(served.view_api(print_info=False, return_format="dict")["named_endpoints"])
    expected = {"/summarize", "/ask", "/extract", "/classify", "/custom", "/info", "/export"}
    assert expected <= named, f"missing: {expected - named}"
    assert not any(name.startswith("/lambda") or name.startswith("/_") for name in named)  # no unnamed leftovers


def test_document_cards_escape_file_names(tiny_workbench, tmp_path):
    from app.cards import describe_documents

    hostile = tmp_path / "<img src=x onerror=alert(1)>.txt"
    hostile.write_text("The Berlin office opened in March.", encoding="utf-8")
    html, data, usable = describe_documents(tiny_workbench, [str(hostile)], tiny_workbench.options())
    assert usable == [str(hostile)]
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;.txt" in html
    assert data["documents"][0]["name"] == hostile.name


def test_two_sessions_cannot_observe_each_others_cache(served, report):
    """Session A reads a document and asks; session B then asks about the same document, even with
    A's exact question: B's usage says nothing was cached for it, while A's follow-up reuses A's."""
    question = "When did the Berlin office open?"
    ask = lambda client, q: client.predict(files(report), q, "auto", 4, 0.0, "auto", 0, api_name="/ask")[3]  # noqa: E731
    first = ask(served, question)
    others = [Client(served.src, verbose=False) for _ in range(2)]  # each guess in a fresh session
    for other, guess in zip(others, ("What is this document about?", question), strict=True):
        assert ask(other, guess)["usage"]["cached_tokens"] == 0, guess
    assert ask(served, "How many employees?")["usage"]["cached_tokens"] > first["document"]["tokens"]
    assert ask(others[0], "How many employees?")["usage"]["cached_tokens"] > first["document"]["tokens"]  # its own


def test_one_sessions_stop_does_not_stop_another_session(served, report):
    other_session = Client(served.src, verbose=False)
    job = served.submit(files(report), "auto", 64, 0.0, "auto", 0, api_name="/summarize")
    while len(job.outputs()) < 3:
        time.sleep(0.05)
    other_session.predict(api_name="/stop_summarize")  # nothing of its own runs: nothing stops
    *_, details = job.result(timeout=120)
    assert details["finish_reason"] != "cancelled"


def test_the_servers_time_limit_stops_a_long_request_and_keeps_its_text(tiny_engine, report):
    from app.ui import build_ui
    from tasks.workbench import Workbench

    demo = build_ui(Workbench(tiny_engine, model_status="tiny-random (test)", demo_model=True, time_limit=1.0))
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    # Each forward pass takes at least 100 ms, so 4,096 tokens take over 400 s on any machine and
    # the 1-second limit comes before tiny-random's greedy text could loop (which would end it by
    # itself): the limit must be what ends the summary (the result's timeout only guards a hang).
    handle = tiny_engine.model.layers[0].register_forward_pre_hook(lambda module, args: time.sleep(0.1))
    try:
        client = Client(demo.local_url, verbose=False)
        job = client.submit(files(report), "auto", 4096, 0.0, "auto", 0, api_name="/summarize")
        text, status, _sources, details = job.result(timeout=120)
        assert details["finish_reason"] == "time_limit" and "stopped at the time limit" in status
        assert text == details["text"] and 0 < details["usage"]["generated_tokens"] < 4096
        assert client.predict(files(report), "Revenue?", "auto", 4, 0.0, "auto", 0, api_name="/ask")[0]
    finally:
        handle.remove()
        demo.close()


def test_an_encrypted_pdf_asks_for_its_password_and_opens_with_it(served, pdfs):
    from tests.pdfs import REPORT_PAGES

    locked = pdfs.make("locked.pdf", REPORT_PAGES, user_password="s3cret")
    with pytest.raises(Exception, match="encrypted and needs a password"):
        served.predict(files(locked), "auto", 0, api_name="/info")
    with pytest.raises(Exception, match="wrong password"):
        served.predict(files(locked), "auto", 0, "nope", api_name="/info")
    card, data = served.predict(files(locked), "auto", 0, "s3cret", api_name="/info")
    assert "locked.pdf" in card and data["pages"] == 3
    *_, details = served.predict(files(locked), "Revenue?", "auto", 4, 0.0, "auto", 0, "s3cret", api_name="/ask")
    assert details["document"]["pages"] == 3

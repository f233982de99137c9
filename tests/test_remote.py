"""The openai backend's edges against a scripted server: keys, models, refusals, broken streams,
missing features and cancelling. Each failure must reach the user as a clear message."""

from __future__ import annotations

import threading
import time

import pytest

from model.errors import RequestRefused
from model.openai_server import ServerRefused, ServerUnavailable, ServerUnreachable, normalize_base_url
from model.remote import connect
from tests.conftest import REPO_ROOT, free_port
from tests.fake_openai import FakeOpenAI, Script, fake_logprob


@pytest.fixture
def serve(tiny_checkpoint):
    """serve(script) -> (engine, server): an engine connected to a fake server; both closed after the test."""
    opened = []

    def start(script: Script | None = None, **options):
        server = FakeOpenAI(script or Script())
        opened.append(server)
        options.setdefault("tokenizer_model", str(tiny_checkpoint))
        engine = connect(server.base_url, **options)
        opened.append(engine)
        return engine, server

    yield start
    for thing in reversed(opened):
        thing.close()


def test_base_urls_are_normalized_and_bad_ones_explained():
    assert normalize_base_url("http://host:8000") == "http://host:8000/v1"
    assert normalize_base_url("http://host:8000/v1/ ") == "http://host:8000/v1"
    assert normalize_base_url("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1"
    with pytest.raises(ValueError, match="http"):
        normalize_base_url("localhost:8000")


def test_an_unreachable_server_is_named_with_what_to_do(tiny_checkpoint):
    with pytest.raises(ServerUnreachable, match=r"cannot reach the model server at http://127.0.0.1:\d+/v1.*running"):
        connect(f"http://127.0.0.1:{free_port()}", tokenizer_model=str(tiny_checkpoint))


def test_the_api_key_is_sent_and_a_refused_key_is_explained(serve, monkeypatch):
    with pytest.raises(ServerUnavailable, match=r"refused the API key.*--api-key"):
        serve(Script(api_key="secret"))
    engine, _ = serve(Script(api_key="secret"), api_key="secret")
    assert engine.generate("Hi", max_new_tokens=4).text == "Hello world. More"
    monkeypatch.setenv("GRANITE_LONGDOC_API_KEY", "from-env")
    _, server = serve(Script(api_key="from-env"))
    script = server.script
    assert script.headers and all(h["Authorization"] == "Bearer from-env" for h in script.headers)


def test_the_served_model_is_chosen_or_asked_for(serve):
    two = [{"id": "granite-a"}, {"id": "granite-b", "max_model_len": 8192}]
    with pytest.raises(ServerUnavailable, match=r"several models.*granite-a, granite-b.*--served-model"):
        serve(Script(models=two))
    with pytest.raises(ServerUnavailable, match="does not serve 'granite-c'; it serves granite-a, granite-b"):
        serve(Script(models=two), served_model="granite-c")
    engine, _ = serve(Script(models=two), served_model="granite-b")
    assert engine.model_name == "granite-b" and engine.context_limit == 8192


def test_a_server_that_is_not_openai_compatible_is_said_so(serve):
    with pytest.raises(ServerUnavailable, match=r"did not answer with JSON.*OpenAI-compatible"):
        serve(Script(models_body=b"<html>Welcome to nginx</html>"))


def test_a_tokenizer_that_splits_differently_from_the_servers_is_refused(serve):
    with pytest.raises(ServerUnavailable, match=r"tokenizer splits text differently.*--model"):
        serve(Script(tokenize=[1, 2, 3]))


def test_prompts_go_out_as_the_engines_token_ids_with_stop_strings_and_usage_comes_back(serve, tiny_engine):
    engine, server = serve(Script(usage={"prompt_tokens": 99, "completion_tokens": 4,
                                         "prompt_tokens_details": {"cached_tokens": 64}}))  # fmt: skip
    script = server.script
    last = engine.generate("Question: why?", prefix="A long document. " * 20, max_new_tokens=9, stop=["\n\n"])
    sent = script.requests[-1]
    expected = tiny_engine.encode("A long document. " * 20) + tiny_engine.tokenizer.encode(
        "Question: why?", add_special_tokens=False
    )
    assert sent["prompt"] == expected and sent["max_tokens"] == 9 and sent["stop"] == ["\n\n"]
    assert sent["stream"] is True and sent["temperature"] == 0.0 and "response_format" not in sent
    assert (last.finish_reason, last.prompt_tokens, last.generated_tokens, last.cached_tokens) == ("length", 99, 4, 64)


def test_a_stop_string_the_server_ignored_still_ends_the_answer(serve):
    engine, _ = serve(Script(pieces=["Paris", " is", "\n\nQuestion", ": next"]))
    last = engine.generate("Where?", max_new_tokens=20, stop=["\n\n"])
    assert last.text == "Paris is" and last.finish_reason == "stop"


def test_extraction_asks_for_the_schema_and_a_server_without_it_gets_a_clear_message(serve):
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    engine, server = serve(Script(pieces=['{"title": "Q3"}'], finish_reason="stop"))
    assert engine.generate("Fields:", max_new_tokens=30, json_schema=schema, stop=["\n"]).text == '{"title": "Q3"}'
    sent = server.script.requests[-1]
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "fields", "schema": schema, "strict": True}}  # fmt: skip
    assert "stop" not in sent  # the schema decides where the JSON ends
    refusing = Script(refuse={"schema": (400, "Unrecognized response_format type 'json_schema'")})
    engine, _ = serve(refusing)
    with pytest.raises(ServerRefused, match="refused JSON-schema structured output \\(HTTP 400\\): Unrecognized"):
        engine.generate("Fields:", max_new_tokens=30, json_schema=schema)


def test_extraction_on_a_server_without_schemas_reaches_the_user_as_a_message(serve, tmp_path):
    from tasks.errors import UserError
    from tasks.extract import spec_from_fields
    from tasks.workbench import Workbench

    engine, _ = serve(Script(refuse={"schema": (400, "response_format is not supported")}))
    document = tmp_path / "memo.txt"
    document.write_text("The title is Q3 report.", encoding="utf-8")
    workbench = Workbench(engine)
    with pytest.raises(UserError, match=r"refused JSON-schema structured output.*not supported"):
        list(workbench.extract([document], spec_from_fields("title"), workbench.options(max_new_tokens=20)))


def test_labels_are_scored_from_prompt_log_probabilities(serve):
    engine, server = serve()
    scores = engine.score("The document is a", [" report", " contract"], prefix="Text. " * 4)
    sent = server.script.requests[-1]
    assert sent["echo"] is True and sent["logprobs"] == 1 and sent["max_tokens"] == 0
    report, contract = (engine.tokenizer.encode(label, add_special_tokens=False) for label in (" report", " contract"))
    context = sent["prompt"][0][: -len(report)]
    assert sent["prompt"] == [context + report, context + contract]  # one batched request, the same context
    # Only the continuation's tokens count: the positions after the shared context.
    expected = [sum(fake_logprob(index, p) for p in range(len(context), len(context) + len(ids)))
                for index, ids in enumerate((report, contract))]  # fmt: skip
    assert scores == pytest.approx(expected)


def test_each_sessions_cache_salt_goes_to_the_server_with_every_request(serve):
    engine, server = serve()
    engine.generate("Question?", prefix="Document. " * 4, max_new_tokens=4, cache_salt="session-a")
    engine.score("The document is a", [" report"], prefix="Document. " * 4, cache_salt="session-a")
    engine.generate("Question?", prefix="Document. " * 4, max_new_tokens=4)  # the command line: no salt
    first, second, unsalted = server.script.requests[-3:]
    assert first["cache_salt"] == second["cache_salt"] == "session-a"
    assert "cache_salt" not in unsalted


def test_a_server_that_refuses_cache_salt_still_serves_and_the_operator_is_told(serve, caplog):
    engine, server = serve(Script(unknown_fields=("cache_salt",)))
    with caplog.at_level("WARNING", logger="model.openai_server"):
        answer = engine.generate("Question?", prefix="Document. ", max_new_tokens=4, cache_salt="session-a")
        scores = engine.score("The document is a", [" report"], prefix="Document. ", cache_salt="session-a")
    assert answer.text == "Hello world. More" and len(scores) == 1
    refused, *later = server.script.requests[-3:]
    assert refused["cache_salt"] == "session-a" and not any("cache_salt" in body for body in later)
    assert [record.message for record in caplog.records if "refuses cache_salt" in record.message]


def test_a_server_without_prompt_log_probabilities_gets_a_clear_message(serve):
    engine, _ = serve(Script(logprobs=False))
    with pytest.raises(ServerRefused, match=r"log-probabilities.*classification needs"):
        engine.score("The document is a", [" report", " contract"])
    engine, _ = serve(Script(refuse={"score": (400, "echo is not supported")}))
    with pytest.raises(ServerRefused, match=r"refused prompt log-probabilities.*echo is not supported"):
        engine.score("The document is a", [" report", " contract"])


def test_a_stream_that_breaks_off_is_an_error_not_a_short_answer(serve):
    engine, _ = serve(Script(end_early=True))
    with pytest.raises(ServerUnavailable, match="ended the answer early"):
        engine.generate("Hi", max_new_tokens=10)


def test_cancel_and_deadline_end_the_wait_during_a_long_prefill_and_hang_up(serve):
    # The server sends nothing until the test sets `prefill_done`: a request that ends before that
    # was ended by its cancel event or deadline, however fast or slow this machine is.
    cancel, prefill_done = threading.Event(), threading.Event()
    engine, server = serve(Script(prefill_done=prefill_done, on_stream=cancel.set))  # cancelled mid-prefill
    last = engine.generate("Hi", max_new_tokens=10, cancel=cancel)
    assert (last.finish_reason, last.text) == ("cancelled", ""), "the engine waited for the server's answer"
    prefill_done.set()
    deadline = time.monotonic() + 10  # a guard against a hang, not a measurement
    while server.script.hang_ups < 1:  # the server finds the client gone when it starts answering
        assert time.monotonic() < deadline, "the connection was left open"
        time.sleep(0.1)
    server.script.prefill_done, server.script.on_stream = threading.Event(), None
    try:
        last = engine.generate("Hi", max_new_tokens=10, deadline=time.monotonic() + 0.3)
    finally:
        server.script.prefill_done.set()
    assert (last.finish_reason, last.text) == ("time_limit", ""), "the engine waited for the server's answer"


def test_a_request_past_the_servers_context_is_refused_before_it_is_sent(serve):
    engine, server = serve(Script(models=[{"id": "granite", "max_model_len": 600}]))
    sent_before = len(server.script.requests)
    with pytest.raises(RequestRefused, match="exceeds the served model's context limit of 600"):
        engine.generate("word " * 500, max_new_tokens=200)
    assert len(server.script.requests) == sent_before


def test_a_server_that_goes_away_reaches_the_task_as_a_message(serve, tmp_path):
    from tasks.errors import ModelUnavailable
    from tasks.workbench import Workbench

    engine, server = serve()
    server.close()  # the server goes away after the app connected
    document = tmp_path / "memo.txt"
    document.write_text("The launch is on 9 May.", encoding="utf-8")
    workbench = Workbench(engine)
    with pytest.raises(ModelUnavailable, match="cannot reach the model server"):
        list(workbench.ask([document], "When is the launch?", workbench.options(max_new_tokens=8)))
    card = workbench.card(workbench.read([document]))  # the document is still described, tokens and all
    assert card.tokens and card.expected_wait == "unknown (the model server cannot be reached)"


def test_the_cli_says_what_is_wrong_with_the_server_options(cli, caplog, tiny_checkpoint):
    def run(*args):
        done = cli(*args, "info", str(REPO_ROOT / "examples/supplier-agreement.md"))
        return done.returncode, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""

    assert run("--backend", "openai", "--quant", "int8") == (
        2, "error: --quant is for the in-process backend; with --backend openai the server decides")  # fmt: skip
    assert run("--backend", "openai", "--base-url", "localhost:8000")[1].startswith("error: --base-url must be")
    caplog.clear()
    code, _ = run("--backend", "openai", "--base-url", f"http://127.0.0.1:{free_port()}", "--model", "tiny-random")
    assert code == 0  # reading needs no model: an unreachable server only makes generation unavailable
    assert "model server not connected: cannot reach the model server" in caplog.text  # the warning on stderr


def test_the_cli_waits_for_a_server_that_is_still_starting(cli, caplog, monkeypatch, tiny_checkpoint):
    port = free_port()
    late = []
    real_sleep, main_thread = time.sleep, threading.current_thread()

    def sleep(seconds: float) -> None:
        """The app's first wait for the server is when the server comes up (no wall-clock race)."""
        if threading.current_thread() is not main_thread:
            real_sleep(seconds)
        elif not late:
            late.append(FakeOpenAI(Script(), port=port))

    monkeypatch.setattr(time, "sleep", sleep)
    try:
        done = cli("--backend", "openai", "--base-url", f"http://127.0.0.1:{port}", "--model", "tiny-random",
                   "--wait-for-server", "60", "ask", str(REPO_ROOT / "examples/supplier-agreement.md"),
                   "Who supplies?", "--max-new-tokens", "4")  # fmt: skip
    finally:
        for server in late:
            server.close()
    assert late, "the app never waited for the server"
    assert done.returncode == 0, done.stderr
    assert "Hello world. More" in done.stdout and "waiting for the model server" in caplog.text


def test_a_server_that_comes_up_after_the_app_is_found_by_the_next_request(tiny_checkpoint, tmp_path):
    from app.cli_parser import build_parser, model_settings
    from app.setup import build_workbench

    port = free_port()
    server = ["--backend", "openai", "--base-url", f"http://127.0.0.1:{port}", "--model", str(tiny_checkpoint)]
    args = build_parser().parse_args([*server, "--max-concurrent", "3"])  # no command: the web UI's arguments
    workbench = build_workbench(model_settings(args), time_limit=60)
    assert (workbench.concurrency, workbench.time_limit) == (3, 60)  # set up whole, nothing set afterwards
    assert workbench.engine is None and "cannot reach the model server" in workbench.unavailable_reason
    document = tmp_path / "memo.txt"
    document.write_text("The launch is on 9 May.", encoding="utf-8")
    late = FakeOpenAI(Script(), port=port)
    try:
        card = workbench.card(workbench.read([document]))
        assert workbench.engine is not None and card.tokens
        assert workbench.unavailable_reason is None and "served by" in workbench.model_status
    finally:
        workbench.engine.close()
        late.close()

"""Wrong input that used to end in a traceback, a hang or an empty API error: each must be one
`error: ...` line with status 2 on the command line (for options: before the model loads), and a
message naming what is wrong through the web API."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from model.generation import sampling_temperature
from tasks.documents import load_document
from tasks.errors import DocumentError, InvalidRequest
from tasks.extract import MAX_SCHEMA_DEPTH, decoding_schema, spec_from_schema
from tasks.options import TaskOptions
from tests.conftest import REPO_ROOT, free_port

LONG_NAME = "a" * 5000  # longer than any file system allows (255 bytes a name, 4096 a path)


@pytest.fixture
def app_main(monkeypatch):
    """app.py's module; loading a model fails the test (every error here comes before it)."""
    spec = importlib.util.spec_from_file_location("app_main_errors", REPO_ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("model.loader.load_model", load_model)
    return module


@pytest.fixture
def document(tmp_path):
    path = tmp_path / "memo.txt"
    path.write_text("The Lisbon warehouse closed in June 2023.", encoding="utf-8")
    return str(path)


def fails(app_main, capsys, *argv: str) -> str:
    """Run `app.py ARGV` in process; it must exit 2 with one `error: ...` line; return that line."""
    assert app_main.main(["--model", "tiny-random", *argv]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def nested_schema(levels: int) -> str:
    """An object schema whose property `a` is an object schema, `levels` deep (2 brackets a level)."""
    schema = '{"type": "string"}'
    for _ in range(levels):
        schema = '{"type": "object", "properties": {"a": ' + schema + "}}"
    return schema


# ---- 1. file names the file system refuses ------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["info", "{file}"], ["text", "{file}"], ["summarize", "{file}"], ["ask", "{file}", "Why?"],
     ["prompt", "{file}", "List the dates."], ["extract", "{file}", "--fields", "date"],
     ["classify", "{file}", "--labels", "memo,invoice"]],
)  # fmt: skip
def test_a_file_name_too_long_is_one_line(app_main, capsys, command):
    line = fails(app_main, capsys, *[arg.replace("{file}", LONG_NAME) for arg in command])
    assert line.endswith(": could not open the file (the file name is too long)")
    assert len(line) < 200  # the name is shortened


def test_the_loader_turns_every_os_error_into_a_document_error(tmp_path):
    with pytest.raises(DocumentError, match=r"^a+…a+: could not open the file \(the file name is too long\)$"):
        load_document(tmp_path / LONG_NAME)
    with pytest.raises(DocumentError, match="could not open the file"):
        load_document(str(tmp_path / "nul\x00.txt"))  # Python refuses it before the system does
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    with pytest.raises(DocumentError, match=r"^loop\.txt: could not open the file \(.*symbolic links\)$"):
        load_document(tmp_path / "loop.txt")
    with pytest.raises(DocumentError, match=r"^x\.txt: file not found$"):
        load_document(tmp_path / "missing.txt" / "x.txt")  # a path through a file that is missing


# ---- 2. --schema: pipes, devices, folders, big files, long names --------------------------------


@pytest.mark.timeout(60)  # reading the pipe used to wait for ever
def test_a_schema_that_is_a_pipe_is_refused_at_once(app_main, capsys, document, tmp_path):
    fifo = tmp_path / "schema.json"
    os.mkfifo(fifo)
    assert "--schema schema.json: this is not a regular file" in fails(
        app_main, capsys, "extract", document, "--schema", str(fifo)
    )


def test_schema_files_that_are_not_regular_or_too_big_are_refused(app_main, capsys, document, tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (2**20 + 1))
    cases = {
        "/dev/zero": "--schema zero: this is not a regular file",
        str(tmp_path): f"--schema {tmp_path.name}: this is a folder, not a file",
        str(big): "--schema big.json: the file is 1.0 MB; the limit is 1 MB",
        str(tmp_path / "missing.json"): "--schema missing.json: file not found",
        LONG_NAME: "could not open the file (the file name is too long)",
    }
    for value, message in cases.items():
        assert message in fails(app_main, capsys, "extract", document, "--schema", value)


# ---- 3. --plot ----------------------------------------------------------------------------------


def test_a_plot_that_cannot_be_written_is_refused_before_the_run(app_main, capsys, tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    cases = {
        str(tmp_path): "this is a folder; give a file name",
        str(tmp_path / "missing" / "plot.png"): "--plot plot.png: the folder missing does not exist",
        str(tmp_path / "pipe.png"): "--plot pipe.png: this is not a regular file",
        str(tmp_path / f"{LONG_NAME}.png"): "cannot write the file (the file name is too long)",
    }
    for value, message in cases.items():
        assert message in fails(app_main, capsys, "check-context", "--lengths", "4k", "--plot", value)


def test_a_plot_name_without_png_is_fine(tmp_path):
    from app.cli_inputs import check_plot

    check_plot(str(tmp_path / "needles"))  # the file is a PNG whatever its name


# ---- 4. temperatures ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "2.5", "-0.1"])
def test_out_of_range_temperatures_are_refused_before_the_model_loads(app_main, capsys, document, value):
    line = fails(app_main, capsys, "summarize", document, f"--temperature={value}")  # `=`: -inf is no option
    assert line.startswith("error: temperature must be between 0 and 2, not ")


def test_nan_is_refused_by_the_task_options():
    for value in (math.nan, math.inf, -1e-9, 2.0000001):
        with pytest.raises(InvalidRequest, match="temperature must be between 0 and 2"):
            TaskOptions(temperature=value).validate()
    TaskOptions(temperature=1e-300).validate()  # tiny but valid: decoded greedily


def test_tiny_temperatures_are_greedy():
    assert [sampling_temperature(t) for t in (0.0, 1e-300, 5e-324, 9.99e-4, math.nan)] == [0.0] * 5
    assert sampling_temperature(1e-3) == 1e-3 and sampling_temperature(0.7) == 0.7


def test_the_engine_decodes_a_tiny_temperature_greedily(tiny_engine):
    prompt = "Annual report 2024: revenue grew to 4.2 million euros."
    greedy = tiny_engine.generate(prompt, max_new_tokens=12)
    tiny = tiny_engine.generate(prompt, max_new_tokens=12, temperature=1e-300, seed=3)
    assert tiny.text == greedy.text and tiny.generated_tokens == 12


def test_a_model_server_gets_zero_for_a_tiny_temperature(tiny_checkpoint):
    from model.remote import connect
    from tests.fake_openai import FakeOpenAI, Script

    server = FakeOpenAI(Script())
    engine = connect(server.base_url, tokenizer_model=str(tiny_checkpoint))
    try:
        for temperature, sent in ((1e-300, 0.0), (0.7, 0.7)):
            engine.generate("Why?", max_new_tokens=4, temperature=temperature)
            assert server.script.requests[-1]["temperature"] == sent
    finally:
        engine.close()
        server.close()


# ---- 5. schemas nested thousands deep -----------------------------------------------------------


def test_a_deeply_nested_schema_is_refused_without_recursion():
    deep = nested_schema(2000)
    for schema in (deep, f'{{"description": "[[[{{{{", "x": {deep}}}'):
        with pytest.raises(InvalidRequest, match=f"nested too deeply: more than {MAX_SCHEMA_DEPTH} levels"):
            spec_from_schema(schema)
    value: dict = {}
    for _ in range(5000):  # the same as a dict (a caller in Python), built without json.loads
        value = {"type": "object", "properties": {"a": value}}
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        spec_from_schema(value)


def test_brackets_in_strings_do_not_count_and_the_deepest_allowed_schema_works(tiny_engine):
    spec_from_schema('{"type": "object", "properties": {"a": {"type": "string", "description": "' + "[" * 99 + '"}}}')
    deepest = nested_schema(MAX_SCHEMA_DEPTH // 2 - 1)  # 31 levels of brackets
    spec = spec_from_schema(deepest)
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        spec_from_schema(nested_schema(MAX_SCHEMA_DEPTH // 2))
    tight = decoding_schema(spec.schema)  # _tighten recurses once a level
    last = tiny_engine.generate("JSON:", max_new_tokens=4, json_schema=tight)  # the grammar compiles
    assert last.generated_tokens >= 1


def test_the_cli_refuses_a_deep_inline_schema_before_the_model_loads(app_main, capsys, document):
    line = fails(app_main, capsys, "extract", document, "--schema", nested_schema(2000))
    assert "the schema is nested too deeply" in line


# ---- 7. command-line parsing errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--time-limit", "nan"], "argument --time-limit: expected a number of seconds"),
        (["--time-limit", "inf", "summarize", "x.pdf"], "argument --time-limit: expected a number of seconds"),
        (["summarize", "x.pdf", "--time-limit", "nan"], "(see app.py summarize --help)"),
        (["summarize", "x.pdf", "--temperature", "warm"], "argument --temperature: invalid float value: 'warm'"),
        (["summarize", "x.pdf", "--max-new-tokens", "lots"], "argument --max-new-tokens: invalid int value"),
        (["--quant", "3bit"], "argument --quant: invalid choice: '3bit'"),
        (["ask", "x.pdf"], "the following arguments are required: question (see app.py ask --help)"),
        (["extract", "x.pdf"], "one of the arguments --fields --schema is required"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_parsing_errors_are_one_line(app_main, capsys, argv, message):
    assert message in fails(app_main, capsys, *argv)


def test_help_still_exits_0(app_main, capsys):
    for argv in (["--help"], ["ask", "--help"]):
        with pytest.raises(SystemExit) as exited:
            app_main.main(argv)
        assert exited.value.code == 0 and "usage: app.py" in capsys.readouterr().out


# ---- 6. numbers through the web API -------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tiny_engine):
    """The UI of a tiny-random workbench, launched in this process: (Client, its URL)."""
    from app.ui import build_ui, launch_options
    from tasks.workbench import Workbench

    demo = build_ui(Workbench(tiny_engine, model_status="tiny-random (test)", demo_model=True))
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True, **launch_options())
    yield Client(demo.local_url, verbose=False), demo.local_url
    demo.close()


def test_settings_that_are_not_numbers_are_named_through_the_api(served, document):
    client, _url = served
    files = [handle_file(document)]
    good = {"max_new_tokens": 8, "temperature": 0.0, "context_budget": 0}
    cases = [
        ("max_new_tokens", "abc", "max new tokens must be a number, not 'abc'"),
        ("temperature", "x", "temperature must be a number, not 'x'"),
        ("context_budget", "zzz", "context budget must be a number, not 'zzz'"),
        ("max_new_tokens", None, "max new tokens must be a number, not None"),
        ("max_new_tokens", 12.5, "max new tokens must be a whole number, not 12.5"),
        ("temperature", 7, "temperature must be between 0 and 2, not 7.0"),
    ]
    for name, value, message in cases:
        settings = {**good, name: value}
        with pytest.raises(AppError, match=message):  # the gr.Error's message
            client.predict(files, "When did it close?", "auto", settings["max_new_tokens"], settings["temperature"],
                           "auto", settings["context_budget"], api_name="/ask")  # fmt: skip
    *_, details = client.predict(files, "When did it close?", "auto", 8, 0.0, "auto", 0, api_name="/ask")
    assert details["task"] == "ask"  # the same numbers, right, still work


def _raw_call(url: str, api_name: str, body: str) -> str:
    """POST `body` (JSON text, as any HTTP client may send it) to an endpoint; the event stream it answers."""
    request = urllib.request.Request(
        f"{url}gradio_api/call/{api_name}", body.encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        event_id = json.load(answer)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=120) as answer:
        return answer.read().decode()


def _upload(url: str, path: Path) -> dict:
    """Upload a file as any HTTP client may; the FileData an endpoint takes for it."""
    boundary = "granite-longdoc-test"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n\r\n'
    body = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        (uploaded,) = json.load(answer)
    return {"path": uploaded, "meta": {"_type": "gradio.FileData"}}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_through_the_api_are_named(served, document, number):
    """Python's JSON reader takes NaN and Infinity (and 1e999 is inf), so a caller can send them."""
    _client, url = served
    files = json.dumps([_upload(url, Path(document))])
    calls = [  # info(documents, strategy, budget, password, max new tokens, language); ask(documents, question, ...)
        ("info", f'[null, "auto", {number}, "", 512, "auto"]', "context budget"),
        ("ask", f'[{files}, "When?", "auto", {number}, 0, "auto", 0, ""]', "max new tokens"),
        ("ask", f'[{files}, "When?", "auto", 8, {number}, "auto", 0, ""]', "temperature"),
    ]
    for api_name, data, name in calls:
        stream = _raw_call(url, api_name, f'{{"data": {data}}}')
        assert "event: error" in stream and f"{name} must be a finite number" in stream, stream

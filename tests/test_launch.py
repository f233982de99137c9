"""Serving options: sign-in, upload size, the queue limit, the port, --share without network, and
one clear error line (never a traceback) for each wrong value, before the model loads."""

import socket
import time

import pytest
from gradio_client import Client, handle_file

from app.launch import AUTH_VARIABLE, check_share_reachable, parse_auth, serve_options
from tasks.errors import InvalidRequest
from tests.conftest import free_port


def test_auth_pairs_are_parsed_and_bad_ones_explained(monkeypatch):
    assert parse_auth("ann:secret, bob:pa:ss") == [("ann", "secret"), ("bob", "pa:ss")]
    assert parse_auth(None) is None and parse_auth("  ") is None
    for bad in ("ann", "ann:", ":secret", "ann:secret,"):
        with pytest.raises(InvalidRequest, match="user:password"):
            parse_auth(bad)
    monkeypatch.setenv(AUTH_VARIABLE, "eve:hunter2")
    assert serve_options(None, None, False, None, 50, 16).auth == [("eve", "hunter2")]
    assert serve_options(None, None, False, "ann:x", 50, 16).auth == [("ann", "x")]  # the flag wins


def test_bad_limits_are_explained():
    with pytest.raises(InvalidRequest, match="--max-file-mb"):
        serve_options(None, None, False, None, 0, 16)
    with pytest.raises(InvalidRequest, match="--max-queue"):
        serve_options(None, None, False, None, 50, 0)
    options = serve_options("0.0.0.0", free_port(), False, None, 2.5, 3)
    assert options.launch_kwargs()["max_file_size"] == int(2.5 * 2**20)
    assert options.queue_kwargs() == {"default_concurrency_limit": 1, "max_size": 3}


def _closed_port() -> tuple[str, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return "127.0.0.1", probe.getsockname()[1]


@pytest.fixture
def app_main(monkeypatch):
    """The command line (app.cli), whose model set-up fails the test if it is ever reached."""
    import app.cli

    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(app.cli, "build_workbench", load_model)
    return app.cli


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_share_without_network_fails_fast_with_a_clear_message(monkeypatch, capsys, app_main):
    with pytest.raises(InvalidRequest, match="--share needs internet access"):
        check_share_reachable(server=_closed_port())
    monkeypatch.setattr("app.launch.SHARE_SERVER", _closed_port())
    assert app_main.main(["--share", "--model", "tiny-random"]) == 2  # before any model is loaded
    assert "--share needs internet access" in _one_error_line(capsys)


BAD_OPTIONS = (
    ("--max-file-mb", "nan"),
    ("--max-file-mb", "inf"),
    ("--max-file-mb", "-1"),
    ("--max-file-mb", "lots"),
    ("--keep-files-minutes", "inf"),
    ("--keep-files-minutes", "nan"),
    ("--keep-files-minutes", "-5"),
    ("--keep-files-minutes", "0"),
    ("--port", "99999"),
    ("--port", "0"),
    ("--port", "http"),
    ("--max-queue", "0"),
    ("--max-queue", "-3"),
    ("--max-queue", "2.5"),
    ("--max-queue", "many"),
)


@pytest.mark.parametrize("option", BAD_OPTIONS, ids="=".join)
def test_a_bad_serve_option_is_one_error_line_before_the_model_loads(option, app_main, capsys):
    assert app_main.main(["--model", "tiny-random", *option]) == 2
    line = _one_error_line(capsys)
    assert option[0] in line and repr(option[1]) in line


def test_a_port_in_use_is_reported_before_the_model_loads(app_main, capsys):
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        port = other_server.getsockname()[1]
        assert app_main.main(["--model", "tiny-random", "--port", str(port)]) == 2
    assert f"port {port} is already in use" in _one_error_line(capsys)


def test_a_port_taken_after_the_check_is_still_one_error_line(app_main, capsys, monkeypatch, tmp_path, tiny_engine):
    from tasks.workbench import Workbench

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    monkeypatch.setattr("app.launch.check_port_free", lambda host, port: None)  # taken just after the check
    monkeypatch.setattr(app_main, "build_workbench", lambda *args: Workbench(tiny_engine, demo_model=True))
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        port = other_server.getsockname()[1]
        assert app_main.main(["--model", "tiny-random", "--port", str(port)]) == 2
    assert "the web server could not start" in _one_error_line(capsys)


@pytest.fixture
def launched(tiny_engine, tmp_path, monkeypatch):
    """Launch the real UI with given serve options; closes it afterwards."""
    from app.ui import build_ui, launch_options
    from tasks.workbench import Workbench

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # its files in a folder of its own
    demos = []

    def launch(**options):
        served = serve_options("127.0.0.1", free_port(), False, options.get("auth"), options.get("mb", 50),
                               options.get("queue", 16))  # fmt: skip
        demo = build_ui(Workbench(tiny_engine, model_status="tiny-random (test)", demo_model=True))
        demo.queue(**served.queue_kwargs())
        demo.launch(**served.launch_kwargs(), prevent_thread_lock=True, quiet=True, **launch_options())
        demos.append(demo)
        return demo.local_url

    yield launch
    for demo in demos:
        demo.close()


def test_sign_in_is_required_when_auth_is_set(launched):
    url = launched(auth="ann:secret")
    with pytest.raises(Exception):  # noqa: B017 (gradio_client raises several kinds here)
        Client(url, verbose=False)
    client = Client(url, auth=("ann", "secret"), verbose=False)
    card, _ = client.predict([], "auto", 0, api_name="/info")
    assert "No documents yet" in card


def test_uploads_over_the_size_limit_are_refused_with_a_message(launched, tmp_path):
    client = Client(launched(mb=0.01), verbose=False)  # 10 KB
    big = tmp_path / "big.txt"
    big.write_text("The Berlin office opened in March. " * 1000, encoding="utf-8")
    with pytest.raises(Exception, match=r"(?i)file.*(size|large)"):
        client.predict([handle_file(str(big))], "auto", 0, api_name="/info")


def test_a_full_queue_turns_requests_away_with_a_message(launched, pdfs):
    client = Client(launched(queue=1), verbose=False)
    report = [handle_file(str(pdfs.report()))]
    # Sampled: a random model's greedy text loops, and the loop would end the summary early.
    running = client.submit(report, "auto", 4096, 1.0, "auto", 0, api_name="/summarize")
    while len(running.outputs()) < 2:  # it holds the model
        time.sleep(0.05)
    waiting = client.submit(report, "Revenue?", "auto", 8, 0.0, "auto", 0, api_name="/ask")
    time.sleep(0.5)
    turned_away = client.submit(report, "Revenue?", "auto", 8, 0.0, "auto", 0, api_name="/ask")
    with pytest.raises(Exception, match=r"(?i)queue is full"):
        turned_away.result(timeout=60)
    running.cancel()  # frees the model (the Stop endpoint would queue behind the full queue)
    assert waiting.result(timeout=60)[3]["task"] == "ask"

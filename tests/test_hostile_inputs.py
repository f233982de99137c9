"""Hostile inputs (tests/hostile.py): each case reads as plain document text or is refused with its
own message, within a time bound, through the Workbench; a representative set also through the CLI."""

import re
import time
import unicodedata

import pytest

from app.cli_parser import build_parser
from tasks.documents import Document, load_document
from tasks.errors import UserError
from tasks.prompts import load_template
from tasks.workbench import Workbench
from tests.hostile import CASES, INJECTION, SECRET, Case, build_corpus

TIME_BOUND_S = 30  # a guard against minutes of work (bombs, endless loops), not a measurement of speed
CLI_CASES = (
    "pdf_encrypted_without_password",
    "pdf_encrypted_wrong_password",
    "pdf_corrupt_after_header",
    "pdf_png_image_renamed",
    "pdf_scanned_image_only",
    "pdf_deflate_bomb",
    "txt_binary_junk",
    "txt_over_the_size_limit",
    "docx_zip_bomb",
    "docx_not_a_zip",
    "html_without_visible_text",
    "name_with_escapes_on_an_empty_file",
    "name_disguised_program",
    "link_to_dev_zero",
    "twenty_one_documents",
)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return build_corpus(tmp_path_factory.mktemp("hostile"))


def read_case(case: Case) -> list[Document]:
    if case.name is not None:  # a name from the caller, as the web UI passes the upload's name
        return [load_document(case.paths[0], case.name, password=case.password)]
    return Workbench().read(list(case.paths), password=case.password)


def is_clean_line(text: str) -> bool:
    """One line, without control or invisible formatting characters (terminal escapes, RTL overrides)."""
    return not any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") for char in text)


def test_the_corpus_has_at_least_30_cases():
    assert len(CASES) >= 30
    assert {case.__name__ for case in CASES.values()} == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_every_case_reads_or_is_refused_clearly_in_bounded_time(corpus, name):
    case = corpus[name]
    started = time.perf_counter()
    if case.outcome == "reads":
        documents = read_case(case)
        elapsed = time.perf_counter() - started
        case.expect(documents)
        for document in documents:
            assert is_clean_line(document.name), repr(document.name)
            assert is_clean_line(document.text.replace("\n", "").replace("\t", "")), "control characters in the text"
    else:
        with pytest.raises(UserError) as caught:
            read_case(case)
        elapsed = time.perf_counter() - started
        message = str(caught.value)
        assert re.search(case.expect, message), message
        assert is_clean_line(message), repr(message)
    assert elapsed < TIME_BOUND_S, f"{name} took {elapsed:.1f} s"


@pytest.mark.parametrize("name", CLI_CASES)
@pytest.mark.timeout(TIME_BOUND_S + 30)  # as the subprocess's timeout was: a hang fails, not waits
def test_cli_prints_one_error_line_and_exits_2(cli, corpus, name):
    case = corpus[name]
    password = ["--password", case.password] if case.password else []
    done = cli("text", *map(str, case.paths), *password)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    last = done.stderr.splitlines()[-1]
    assert last.startswith("error: ") and re.search(case.expect, last.removeprefix("error: ")), done.stderr


def test_cli_info_with_a_model_refuses_a_zip_bomb(cli, corpus, tiny_checkpoint):
    case = corpus["docx_zip_bomb"]
    done = cli("--model", "tiny-random", "info", str(case.paths[0]))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert re.search(case.expect, done.stderr.splitlines()[-1].removeprefix("error: ")), done.stderr


def test_cli_reads_with_the_password_and_odd_names(cli, corpus):
    locked = corpus["pdf_encrypted_right_password"].paths[0]
    done = cli("text", str(locked), "--password", SECRET)
    assert done.returncode == 0, done.stderr
    assert "4.2 million euros" in done.stdout
    done = cli("text", str(corpus["name_not_valid_utf8"].paths[0]), str(corpus["name_disguised_program"].paths[0]))
    assert done.returncode == 2 and "invoicefdp.exe: unsupported file type .exe" in done.stderr
    done = cli("text", str(corpus["name_not_valid_utf8"].paths[0]))
    assert done.returncode == 0 and "===== DOCUMENT: caf\ufffd-notes.txt (1 page) =====" in done.stdout


@pytest.mark.parametrize(
    "command",
    [["info"], ["text"], ["summarize"], ["ask", "Q?"], ["custom", "Do it."], ["prompt", "Do it."],
     ["extract", "--fields", "a,b"], ["classify", "--labels", "a,b"]],
)  # fmt: skip
def test_every_file_command_takes_a_password(command):
    args = build_parser().parse_args([command[0], "a.pdf", *command[1:], "--password", "pw"])
    assert args.password == "pw" and args.files == ["a.pdf"]


@pytest.mark.parametrize("task", ["summarize", "ask", "custom", "classify"])
def test_every_task_passes_the_password_on(corpus, fake_engine, task):
    workbench = Workbench(fake_engine)
    locked = corpus["pdf_encrypted_right_password"].paths
    arguments = {"summarize": (), "ask": ("What was the revenue?",), "custom": ("List the figures.",),
                 "classify": ("report,invoice",)}[task]  # fmt: skip
    events = list(getattr(workbench, task)(locked, *arguments, workbench.options(), password=SECRET))
    assert events[-1].task == task and "4.2 million euros" in fake_engine.prompts[-1]


def test_injected_instructions_stay_document_text_before_the_task(corpus, fake_engine):
    workbench = Workbench(fake_engine)
    list(workbench.summarize(corpus["txt_injected_instructions"].paths, workbench.options()))
    prompt = fake_engine.prompts[-1]
    instruction = load_template("summarize", "en").fill("instruction")
    assert prompt.endswith(instruction)
    assert f"[Page 1]\n{INJECTION}\n===== END OF DOCUMENT =====" in prompt
    assert prompt.index(INJECTION) < prompt.rindex(instruction)


WEB_SIZE_LIMIT = 5 * 2**20  # larger files are Gradio's upload limit's business, tested in test_launch


def _web_cases(corpus: dict[str, Case]) -> list[str]:
    return [
        name
        for name, case in corpus.items()
        if case.outcome == "refused"
        and len(case.paths) == 1
        and case.paths[0].is_file()
        and case.paths[0].stat().st_size < WEB_SIZE_LIMIT
        and case.name is None
        and not name.startswith("name_")  # Gradio's upload re-encodes odd names; their cases run above
    ]


def test_refused_files_reach_the_browser_as_messages_and_the_server_lives_on(corpus, tiny_engine):
    from gradio_client import Client, handle_file

    from app.ui import build_ui
    from tests.conftest import free_port

    demo = build_ui(Workbench(tiny_engine, model_status="tiny-random (test)", demo_model=True))
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        names = _web_cases(corpus)
        assert len(names) >= 15
        for name in names:
            case = corpus[name]
            started = time.monotonic()
            with pytest.raises(Exception) as info:
                client.predict([handle_file(str(case.paths[0]))], "auto", 0, case.password or "", api_name="/info")
            assert re.search(case.expect, str(info.value)), f"{name}: {info.value}"
            assert time.monotonic() - started < TIME_BOUND_S, f"{name} took more than {TIME_BOUND_S} s"
        good = corpus["txt_cp1252"].paths[0]
        card, _ = client.predict([handle_file(str(good))], "auto", 0, api_name="/info")
        assert good.name in card  # still serving
    finally:
        demo.close()

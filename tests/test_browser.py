"""The app in a real browser: headless Chromium (Debian's, never a downloaded one) driven by
Playwright, against `python app.py --model tiny-random` as a user starts it.

What a person does and sees: Enter sends a question and the answer arrives in the thread; a
follow-up reuses the prefilled document; citation [1] opens the page image with the cited sentence
lit; a map-reduce summary shows each part before the merge; new documents clear the old results;
a bad file gets its own error chip beside the good file's card; Arabic is right to left; a
Japanese browser gets a Japanese interface; on a phone the Run button is on the first screen;
without a model the task buttons are disabled with one plain sentence. Screenshots go to
test-artifacts/. Without Chromium the tests are skipped, unless GRANITE_LONGDOC_REQUIRE_BROWSER=1
(as `.ci/run` sets it) makes that a failure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.browser import chromium
from tests.conftest import REPO_ROOT, app_py_serving, free_port

pytestmark = pytest.mark.browser
ARTIFACTS = REPO_ROOT / "test-artifacts"
LONG_PAGES = [
    f"Chapter {n}. The harbour office number {n} reviewed {n * 7} shipments of grain, timber and wool. "
    + "Every shipment was weighed, logged and checked against the manifest by two clerks. " * 14
    for n in range(1, 9)
]


@pytest.fixture(scope="module")
def app_url(tiny_checkpoint):
    with app_py_serving() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as opened:
        yield opened


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    from tests.pdfs import PdfFactory

    folder = tmp_path_factory.mktemp("browser")
    factory = PdfFactory(folder)
    broken = folder / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\nthis is not a PDF at all\n")
    return {"report": factory.report(), "long": factory.make("harbour.pdf", LONG_PAGES), "broken": broken}


def open_app(browser, url: str, **context):
    from playwright.sync_api import expect

    page = browser.new_context(
        accept_downloads=True, **{"viewport": {"width": 1440, "height": 1000}, **context}
    ).new_page()
    page.goto(url)
    expect(page.locator("#summarize-run")).to_be_visible(timeout=30_000)
    return page


def upload(page, *paths: Path, cards: int = 1) -> None:
    from playwright.sync_api import expect

    page.locator("#documents input[type=file]").set_input_files([str(path) for path in paths])
    expect(page.locator("#document-cards .doc-card:not(.strategies), #document-cards .doc-chip")).to_have_count(
        cards, timeout=60_000
    )


def test_ask_is_a_conversation_with_citations_that_open_the_page(browser, app_url, documents, tmp_path):
    from playwright.sync_api import expect

    page = open_app(browser, app_url)
    upload(page, documents["report"])
    page.get_by_role("tab", name="Ask").click()
    box = page.locator("#question textarea")
    box.fill("When did the Berlin office open?")
    box.press("Enter")  # Enter sends
    expect(box).to_have_value("")  # and the box is cleared
    thread = page.locator("#ask-thread")
    expect(thread.locator(".user-row")).to_contain_text("When did the Berlin office open?")
    expect(page.locator("#ask-progress")).to_contain_text("Done", timeout=120_000)
    first = json.loads(_details(page))
    assert first["task"] == "ask" and first["citations"]

    # Citation [1] opens the page with the cited sentence lit.
    citation = first["citations"][0]
    thread.locator("button.cite").first.click()
    image = page.locator("#viewer img.viewer-image")
    expect(image).to_be_visible(timeout=30_000)
    expect(page.locator("#viewer")).to_contain_text(f"{citation['page']}")
    mark = page.locator("#viewer .viewer-mark.selected").first
    expect(mark).to_be_visible()
    expected = _sentence_box(documents["report"], citation["page"], citation["text"])
    _assert_on(mark.bounding_box(), image.bounding_box(), expected)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-citation.png"), full_page=True)

    # A follow-up question: Shift+Enter adds a line, Enter sends; the document's prefill is reused.
    box.fill("And the Munich office?")
    box.press("Shift+Enter")
    assert box.input_value() == "And the Munich office?\n"
    started = time.monotonic()
    box.press("Enter")
    answers = thread.locator(".bot-row")
    expect(answers).to_have_count(2)
    first_token = _wait_for_text(answers.nth(1), started)
    expect(page.locator("#ask-progress")).to_contain_text("Done", timeout=120_000)
    follow_up = json.loads(_details(page))
    assert follow_up["usage"]["cached_tokens"] > 0, follow_up["usage"]
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps({"follow_up_first_token_seconds": first_token}))

    # Export the answer as JSON.
    export = page.locator("#ask-export-json")
    expect(export).to_be_enabled(timeout=30_000)
    with page.expect_download(timeout=30_000) as download_info:
        export.click()
    exported = tmp_path / "export.json"
    download_info.value.save_as(exported)
    assert json.loads(exported.read_text(encoding="utf-8"))["question"] == "And the Munich office?"
    with page.expect_download(timeout=30_000) as download_info:
        page.locator("#ask-export-md").click()
    conversation = Path(download_info.value.path()).read_text(encoding="utf-8")
    assert "## 1. When did the Berlin office open?" in conversation and "## 2. And the Munich office?" in conversation
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)


_WATCH_FOR_A_PART_BEFORE_THE_MERGE = """() => {
  window.partBeforeMerge = false;
  const check = () => {
    const output = document.querySelector('#summarize-output');
    const progress = document.querySelector('#summarize-progress');
    if (output && progress && output.innerText.includes('1 / ') && progress.innerText.includes('%')
        && !progress.innerText.includes('Done')) window.partBeforeMerge = true;
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def test_a_map_reduce_summary_shows_its_parts_before_the_merge(browser, app_url, documents):
    from playwright.sync_api import expect

    page = open_app(browser, app_url)
    page.get_by_text("Advanced").click()
    page.get_by_label("Context budget in tokens (0 = the default)").fill("700")
    page.get_by_label("Max new tokens (1 to 8,192)").fill("24")
    page.get_by_label("Max new tokens (1 to 8,192)").press("Tab")
    upload(page, documents["long"])
    expect(page.locator("#document-cards")).to_contain_text("map-reduce", timeout=60_000)
    # The page records every state it renders: a fast model can finish between two polls.
    page.evaluate(_WATCH_FOR_A_PART_BEFORE_THE_MERGE)
    page.locator("#summarize-run").click()
    expect(page.locator("#summarize-stop")).to_be_visible()  # Run became Stop
    output, progress = page.locator("#summarize-output"), page.locator("#summarize-progress")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and "Done" not in progress.inner_text():
        if "1 / " in output.inner_text():
            page.screenshot(path=str(ARTIFACTS / "browser-map-reduce.png"), full_page=True)
            break
        time.sleep(0.05)
    expect(progress).to_contain_text("Done", timeout=180_000)
    assert page.evaluate("window.partBeforeMerge"), "no part's summary was shown before the merge"
    expect(page.locator("#summarize-run")).to_be_visible()  # and back
    expect(output.locator("details")).to_have_count(1)  # the parts, collapsed under the summary
    expect(page.locator("#summarize-export-json")).to_be_enabled()

    # New documents: the old result and its exports go.
    upload(page, documents["report"])
    expect(output).to_have_text("")
    expect(page.locator("#summarize-export-json")).to_be_disabled()
    expect(progress).to_have_text("")


def test_a_bad_file_gets_its_own_error_chip_and_the_good_one_loads(browser, app_url, documents):
    from playwright.sync_api import expect

    page = open_app(browser, app_url)
    upload(page, documents["report"], documents["broken"], cards=2)
    cards = page.locator("#document-cards")
    expect(cards.locator(".doc-card:not(.strategies)")).to_have_count(1)
    expect(cards.locator(".doc-chip.error")).to_have_count(1)
    expect(cards.locator(".doc-chip.error")).to_contain_text("broken.pdf")
    expect(cards.locator(".doc-card").first).to_contain_text("report.pdf")
    page.get_by_role("tab", name="Custom prompt").click()
    instruction = page.locator("#custom-instruction textarea")
    instruction.fill("List the office openings.")  # "office" is in the report: its sources
    instruction.press("Control+Enter")  # Ctrl+Enter runs the tab's task, on the file that loaded
    expect(page.locator("#custom-progress")).to_contain_text("Done", timeout=120_000)
    expect(page.locator("#custom-sources")).to_contain_text("report.pdf")
    assert page.get_by_text("Error", exact=True).count() == 0


def test_arabic_is_right_to_left_and_a_japanese_browser_gets_a_japanese_interface(browser, app_url, documents):
    from playwright.sync_api import expect

    page = open_app(browser, app_url, locale="ja-JP")
    expect(page.get_by_role("tab", name="要約")).to_be_visible()
    expect(page.locator("#summarize-run")).to_have_text("要約")
    expect(page.get_by_role("tab", name="質問")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "browser-japanese.png"))

    upload(page, documents["report"])
    page.get_by_role("tab", name="質問").click()
    box = page.locator("#question textarea")
    box.fill("متى افتتح مكتب برلين؟")
    assert box.evaluate("node => node.matches(':dir(rtl)')")
    box.press("Enter")
    question = page.locator("#ask-thread .user-row .md").first
    expect(question).to_contain_text("برلين")
    assert question.evaluate("node => node.matches(':dir(rtl)')")
    expect(page.locator("#ask-progress")).to_contain_text("完了", timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "browser-arabic.png"), full_page=True)


def test_on_a_phone_run_is_on_the_first_screen_after_choosing_a_file(browser, app_url, documents):
    page = open_app(browser, app_url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    upload(page, documents["report"])
    page.evaluate("window.scrollTo(0, 0)")
    run = page.locator("#summarize-run").bounding_box()
    page.screenshot(path=str(ARTIFACTS / "browser-phone.png"))
    assert run is not None and run["y"] + run["height"] <= 844, run


def test_without_a_model_the_task_buttons_are_disabled_with_one_plain_sentence(browser, tiny_engine):
    from playwright.sync_api import expect

    from app.ui import build_ui, launch_options
    from tasks.workbench import Workbench

    reason = "could not reach huggingface.co: [Errno -2] Name or service not known; use --model PATH"
    demo = build_ui(Workbench(model_status="ibm-granite (not loaded)", unavailable_reason=reason))
    demo.queue()
    demo.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        page = open_app(browser, demo.local_url)
        expect(page.locator("#summarize-run")).to_be_disabled()
        warning = page.locator("#demo-warning")
        expect(warning).to_contain_text("no language model is loaded")
        assert "Errno" not in warning.inner_text() and "--model" not in warning.inner_text()
        note = page.locator("#operator-note")
        expect(note).to_be_visible()
        note.get_by_text("For the operator").click()
        expect(note).to_contain_text("--model PATH")
        page.get_by_role("tab", name="Ask").click()
        expect(page.locator("#ask-run")).to_be_disabled()
    finally:
        demo.close()


def _details(page) -> str:
    """The finished answer's JSON, as its Export JSON button gives it."""
    with page.expect_download(timeout=30_000) as download_info:
        page.locator("#ask-export-json").click()
    return Path(download_info.value.path()).read_text(encoding="utf-8")


def _wait_for_text(answer, started: float, timeout: float = 120) -> float:
    """Seconds from `started` until the answer shows its first generated text."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        shown = answer.inner_text().strip()
        if shown and shown != "…":
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError("the follow-up's answer never started")


def _sentence_box(pdf: Path, page_number: int, sentence: str) -> tuple[float, float, float, float]:
    """Where `sentence` starts on the page, as shares of the page from its top left, found by
    PDFium's own text search (not by the app's positions module)."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(pdf))
    try:
        page = document[page_number - 1]
        width, height = page.get_size()
        text_page = page.get_textpage()
        searcher = text_page.search(" ".join(sentence.split()[:4]), match_case=False)
        found = searcher.get_next()
        assert found is not None, f"{sentence!r} is not on page {page_number}"
        start, count = found
        boxes = [text_page.get_charbox(index) for index in range(start, start + count)]
        left, bottom = min(box[0] for box in boxes), min(box[1] for box in boxes)
        right, top = max(box[2] for box in boxes), max(box[3] for box in boxes)
        return left / width, 1 - top / height, right / width, 1 - bottom / height
    finally:
        document.close()


def _assert_on(mark: dict, image: dict, expected: tuple[float, float, float, float]) -> None:
    """The highlight's rectangle covers the sentence's first words: it starts at them and its
    height is their line's."""
    x0 = (mark["x"] - image["x"]) / image["width"]
    y0 = (mark["y"] - image["y"]) / image["height"]
    y1 = (mark["y"] + mark["height"] - image["y"]) / image["height"]
    left, top, right, bottom = expected
    assert abs(x0 - left) < 0.02, (x0, expected)
    assert y0 <= (top + bottom) / 2 <= y1, (y0, y1, expected)
    assert (mark["x"] + mark["width"] - image["x"]) / image["width"] >= right - 0.01, (mark, expected)

"""The app in a real browser: headless Chromium (Debian's, never a downloaded one) driven by
Playwright, against `python app.py --model tiny-random` as a user starts it.

It uploads a generated PDF, runs Summarize (watching the text stream in) and Ask (watching the
page-cited sources appear), exports the answer as JSON, and saves a screenshot of the page to
test-artifacts/browser.png. Without Chromium the test is skipped, unless
GRANITE_LONGDOC_REQUIRE_BROWSER=1 (as `.ci/run` sets it) makes that a failure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.browser import chromium
from tests.conftest import REPO_ROOT, app_py_serving

pytestmark = pytest.mark.browser
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def app_url(tiny_checkpoint):
    with app_py_serving() as url:
        yield url


def test_upload_summarize_ask_and_export_in_chromium(app_url, pdfs, tmp_path):
    report = pdfs.report()
    with chromium() as browser:
        from playwright.sync_api import expect

        page = browser.new_page(viewport={"width": 1440, "height": 1100}, accept_downloads=True)
        page.goto(app_url)
        expect(page.get_by_text("Granite Long-Doc").first).to_be_visible(timeout=30_000)
        expect(page.locator("#document-cards")).to_contain_text("No documents yet")

        page.locator("#documents input[type=file]").set_input_files(str(report))
        cards = page.locator("#document-cards")
        expect(cards).to_contain_text("report.pdf", timeout=60_000)
        expect(cards).to_contain_text("3 pages")
        expect(cards.locator(".gauge")).to_have_count(1)
        expect(cards).to_contain_text("Each task will use")

        page.locator("#summarize-run").click()
        ARTIFACTS.mkdir(exist_ok=True)
        lengths = _watch_text(page, "#summarize-output", "#summarize-steps", ARTIFACTS / "browser-running.png")
        assert lengths[-1] > 0, "no summary was written"
        assert any(0 < length < lengths[-1] for length in lengths), f"the text did not stream: {lengths}"
        expect(page.locator("#summarize-export-json")).to_be_enabled(timeout=30_000)

        page.get_by_role("tab", name="Ask").click()
        page.locator("#question textarea").fill("When did the Berlin office open?")
        page.locator("#ask-run").click()
        _watch_text(page, "#ask-output", "#ask-steps")
        expect(page.locator("#ask-sources")).to_contain_text("report.pdf, page", timeout=30_000)
        expect(page.locator("#ask-history")).to_contain_text("When did the Berlin office open?")

        export = page.locator("#ask-export-json")
        expect(export).to_be_enabled(timeout=30_000)
        with page.expect_download(timeout=30_000) as download_info:
            export.click()
        exported = tmp_path / "export.json"
        download_info.value.save_as(exported)
        data = json.loads(exported.read_text(encoding="utf-8"))
        assert data["task"] == "ask" and data["question"] == "When did the Berlin office open?"
        assert data["sources"] and data["sources"][0]["pages"]

        assert page.get_by_text("Error", exact=True).count() == 0  # no error toast along the way
        page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)


def _watch_text(page, output: str, steps: str, screenshot: Path | None = None, timeout: float = 120) -> list[int]:
    """Poll the output's text length until the steps say the task is done; return the lengths seen.
    With `screenshot`, save the page once while the task runs (the progress bar and steps)."""
    lengths: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lengths.append(len(page.locator(output).inner_text()))
        if screenshot is not None and "▶" in page.locator(steps).inner_text():
            page.screenshot(path=str(screenshot), full_page=True)
            screenshot = None
        if "Done" in page.locator(steps).inner_text():
            lengths.append(len(page.locator(output).inner_text()))
            return lengths
        time.sleep(0.03)
    raise AssertionError(f"{output} did not finish in {timeout:.0f} s; steps: {page.locator(steps).inner_text()}")

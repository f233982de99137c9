"""Time from pressing Enter to the first token of the answer in the web UI, as a person feels it.

The real page (app.ui) is served in this process with the real-size Granite architecture (random
weights: the time does not depend on their values) and driven by headless Chromium (Debian's):
upload a document, ask a first question (the document is read and prefilled), then a follow-up
(the session's prefilled document is reused). Prints the machine, the document's size and both
times; `--model tiny-random` is the smoke test's run (the figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.random_granite import MODELS, REAL_SIZE, SMOKE_MODEL_HELP, build_random_granite, filler_text
from benchmarks.reading import machine

QUESTIONS = ("What does the report say about the harbour office?", "And what about the shipments?")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=1200, help="the document's length in words")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--model", choices=MODELS, default=REAL_SIZE, help=SMOKE_MODEL_HELP)
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("error: Debian's chromium is needed (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        document = write_document(Path(folder) / "harbour.pdf", args.words)
        report = measure(document, args.model, args.max_new_tokens, browser)
    report = {"model": args.model, "machine": machine(), "words": args.words, **report}
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def write_document(path: Path, words: int) -> Path:
    """A PDF of `words` words of filler text about a harbour office, 300 words a page."""
    from fpdf import FPDF

    text = filler_text(words).split()
    pdf = FPDF()
    pdf.set_font("Helvetica", size=10)
    for start in range(0, len(text), 300):
        pdf.add_page()
        pdf.multi_cell(0, 5, "The harbour office logged the shipments. " + " ".join(text[start : start + 300]))
    pdf.output(str(path))
    return path


def measure(document: Path, model: str, max_new_tokens: int, browser: str) -> dict:
    from playwright.sync_api import sync_playwright

    from app.ui import build_ui, launch_options
    from model.engine import Engine
    from model.runtime import Runtime
    from tasks.workbench import Workbench

    engine = Engine(build_random_granite(Runtime("cpu", "float32", "none"), model=model))
    demo = build_ui(Workbench(engine, model_status=f"{model} (benchmark)", demo_model=True))
    demo.queue()
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=browser, headless=True, args=CHROMIUM_FLAGS)
            try:
                return drive(chromium.new_page(viewport={"width": 1440, "height": 1000}), demo.local_url, document,
                             max_new_tokens)  # fmt: skip
            finally:
                chromium.close()
    finally:
        demo.close()


def drive(page, url: str, document: Path, max_new_tokens: int) -> dict:
    """Upload, then ask twice; the seconds from Enter to the first text of each answer."""
    page.goto(url)
    page.locator("#summarize-run").wait_for(timeout=60_000)
    page.get_by_text("Advanced").click()
    page.locator("#task-column input[type=number]").first.fill(str(max_new_tokens))
    page.locator("#task-column input[type=number]").first.press("Tab")
    page.locator("#documents input[type=file]").set_input_files(str(document))
    page.locator("#document-cards .doc-card").first.wait_for(timeout=600_000)
    tokens = page.locator("#document-cards .doc-facts").first.inner_text()
    page.get_by_role("tab", name="Ask").click()
    seconds = [ask(page, question, turn) for turn, question in enumerate(QUESTIONS)]
    return {
        "document": tokens,
        "first_question_first_token_s": round(seconds[0], 3),
        "follow_up_first_token_s": round(seconds[1], 3),
        "follow_up_speedup": round(seconds[0] / seconds[1], 1),
    }


def ask(page, question: str, turn: int, timeout: float = 1800) -> float:
    box = page.locator("#question textarea")
    box.fill(question)
    started = time.monotonic()
    box.press("Enter")
    answer = page.locator("#ask-thread .bot-row").nth(turn)
    while time.monotonic() - started < timeout:
        if answer.count() and answer.inner_text().strip() not in ("", "…"):
            first = time.monotonic() - started
            page.locator("#ask-progress .run-progress.done, #ask-progress .run-progress.stopped").wait_for(
                timeout=timeout * 1000
            )
            return first
        time.sleep(0.01)
    raise TimeoutError(f"no answer to {question!r} in {timeout:.0f} s")


if __name__ == "__main__":
    sys.exit(main())

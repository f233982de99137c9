"""Untrusted text is never live: document text, model output, questions and error messages that
embed remote images, frames, styles or scripts make the browser fetch nothing.

The browser test serves the real UI with a scripted model whose answers carry every kind of
payload, uploads a document full of them, runs the tasks in Chromium, and checks that a local
listener the payloads point at receives no connection at all, while the text stays readable. A
control page then loads one image from the same listener, so the test cannot pass by accident.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from app.untrusted import ZERO_WIDTH_SPACE, code_block, html, markdown, plain
from tests.browser import chromium
from tests.fakes import FakeEngine
from tests.serving import serving


def payloads(base: str, where: str) -> str:
    """Every way we know for text rendered as Markdown or HTML to make a browser fetch `base`."""
    url = f"{base}/{where}"
    # fmt: off
    return "\n\n".join([
        f"Revenue grew, see the chart ![chart]({url}-markdown-image.png?leak=secret) in the appendix.",
        f'Raw image: <img src="{url}-raw-img.png"> and <img srcset="{url}-srcset.png 1x">.',
        f'<iframe src="{url}-iframe.html"></iframe> <object data="{url}-object"></object> <embed src="{url}-embed">',
        f'<link rel="stylesheet" href="{url}-link.css"><style>@import url("{url}-import.css");</style>',
        f'<div style="background-image:url({url}-style.png)">styled</div> <svg><image href="{url}-svg.png"/></svg>',
        f'<video poster="{url}-poster.png" src="{url}-video.mp4"></video> <audio src="{url}-audio.mp3"></audio>',
        f'<picture><source srcset="{url}-picture.png"></picture> <input type="image" src="{url}-input.png">',
        f"A reference image ![ref][logo] and a shortcut ![logo].\n\n[logo]: {url}-reference.png",
        f"An autolink <{url}-autolink.png> and a link [click me](javascript:alert(1)) and [ok]({url}-link).",
        f"$$\\includegraphics{{{url}-katex.png}}$$ and $$\\href{{{url}-href}}{{x}}$$",
        f"```mermaid\ngraph TD; A[<img src='{url}-mermaid.png'>] --> B\n```",
        f"After a lone carriage return\r```mermaid\rgraph TD\rA[\"&lt;img src='{url}-cr-mermaid.png'&gt;\"]\r```",
        f'"Quoted: <img src="{url}-quote.png"> as the document says."',
    ])
    # fmt: on


def test_markdown_reads_the_same_but_loads_nothing():
    text = payloads("http://127.0.0.1:9", "answer")
    shown = markdown(text)
    assert shown.replace(ZERO_WIDTH_SPACE, "") == text.replace("\r", "\n")  # nothing lost; one kind of line break
    assert "<" + ZERO_WIDTH_SPACE in shown and "](" not in shown and "][" not in shown and "]:" not in shown
    assert shown.count("```" + ZERO_WIDTH_SPACE + "mermaid") == 2 and "```mermaid" not in shown
    for line_break in ("\r", "\r\n", "\u2028", "\x85"):
        assert markdown(f"x{line_break}```mermaid{line_break}") == f"x\n```{ZERO_WIDTH_SPACE}mermaid\n"
    assert markdown("**Revenue** grew:\n\n- 12%\n- `code <b>`") == "**Revenue** grew:\n\n- 12%\n- `code <\u200bb>`"


def test_plain_escapes_every_markdown_character_and_keeps_lines():
    expected = "\\# 1. Scope  \n" + "\u00a0" * 4 + "indented \\<b\\>\\*x\\*\\</b\\> for 4.2 million, 2023-05"
    assert plain("# 1. Scope\n    indented <b>*x*</b> for 4.2 million, 2023-05") == expected
    blocks = "2\\. Terms  \n\\- item  \n\\---  \n\\| a \\| b \\|  \n\\> quote"
    assert plain("2. Terms\n- item\n---\n| a | b |\n> quote") == blocks
    assert plain("![x](http://host/x.png) &lt; `code`") == "!\\[x\\](http://host/x.png) \\&lt; \\`code\\`"
    assert plain("a\r# b\u2028  - c") == "a  \n\\# b  \n\u00a0\u00a0\\- c"
    assert html('<img src="x"> & co') == '&lt;img src="x"&gt; &amp; co'


class Listener:
    """A TCP server that only counts the connections it gets (HTTP or HTTPS alike)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self.running:
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.server.close()


@pytest.fixture
def listener():
    opened = Listener()
    yield opened
    opened.close()


@pytest.mark.browser
def test_no_document_answer_history_source_or_error_makes_chromium_fetch_anything(listener, tmp_path, monkeypatch):
    from playwright.sync_api import expect

    base = f"http://127.0.0.1:{listener.port}"
    document = tmp_path / "hostile.md"
    document.write_text("# Quarterly report\n\n" + payloads(base, "document"), encoding="utf-8")
    engine = FakeEngine(reply=payloads(base, "answer"))
    hostile_type = f"<img src={base}/toast.png>"  # jsonschema quotes it in its error message
    hostile_schema = '{"type": "object", "properties": {"a": {"type": "%s"}}}' % hostile_type  # noqa: UP031
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    with serving(engine) as demo, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(demo.local_url)
        page.locator("#documents input[type=file]").set_input_files(str(document))
        expect(page.locator("#document-cards")).to_contain_text("hostile.md", timeout=60_000)
        for tab, run in (("Summarize", "summarize"), ("Ask", "ask"), ("Custom prompt", "custom")):
            page.get_by_role("tab", name=tab).click()
            if run == "ask":
                page.locator("#question textarea").fill(f'What does <img src="{base}/question.png"> show?')
            elif run == "custom":
                page.get_by_label("Your instruction").fill("List the figures.")
            page.locator(f"#{run}-run").click()
            expect(page.locator(f"#{run}-progress")).to_contain_text("Done", timeout=60_000)
            shown = page.locator("#ask-thread .bot-row").last if run == "ask" else page.locator(f"#{run}-output")
            expect(shown).to_contain_text("see the chart ![chart]")
        expect(page.locator("#ask-thread .user-row").last).to_contain_text('What does <img src="')
        citation = page.locator("#custom-sources .src-cite").first  # a sentence of the document, as written
        expect(citation).to_be_visible()
        citation.click()  # and the viewer shows its page's text, as written
        expect(page.locator("#viewer mark").first).to_be_visible(timeout=30_000)
        page.get_by_role("tab", name="Extract").click()
        page.get_by_text("…or a JSON schema of an object").click()
        page.locator("#extract-schema .cm-content").fill(hostile_schema)
        page.locator("#extract-run").click()
        expect(page.get_by_text("is not valid under any of the given schemas").first).to_be_visible(timeout=30_000)
        time.sleep(1.0)  # time for anything lazy to load
        assert listener.connections == 0, f"the browser fetched from the listener {listener.connections} times"
        assert page.locator('a[href^="javascript:"]').count() == 0

        control = browser.new_page()
        control.set_content(f'<img src="{base}/control.png">')
        deadline = time.monotonic() + 10
        while listener.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listener.connections > 0, "the listener cannot see a browser fetch: the test proves nothing"


def test_an_export_of_cut_off_json_keeps_all_of_it_inside_its_code_block():
    from markdown_it import MarkdownIt

    from app.results import ResultView, result_markdown

    cut_off = '{"a": "x\n```\n![l](http://127.0.0.1:9/leak)\n<img src=http://127.0.0.1:9/i>\n````json\n'
    details = {"task": "extract", "text": cut_off, "document": {"name": "d"}, "sources": []}
    exported = result_markdown(ResultView.from_json(details))
    rendered = MarkdownIt("commonmark").enable("table").render(exported)
    assert "<img" not in rendered and "<a " not in rendered and "leak" in rendered  # shown, as code
    assert code_block("a ``` b", "json") == "````json\na ``` b\n````"

"""The document viewer beside an answer: the cited page with the passage lit.

A PDF page is rendered by PDFium (as an image inside the page's HTML, a `data:` address: nothing
is fetched from elsewhere) with the citation's rectangles drawn over it, as shares of the page so
they fit any size. A page of a text, Markdown, Word or HTML file is shown as its text with the
cited sentence marked. Previous and next page turn the same file. What a click may open is only
what this session's own results cite (`Registry`): a browser cannot ask for another file.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from app.i18n import text
from app.sources_view import places
from tasks.errors import UserError
from tasks.positions import pdf_page_count, render_pdf_page
from tasks.workbench import Workbench

VIEW_DPI = 150  # sharp when zoomed in to twice the column's width
MAX_VIEW_SIDE = 2000  # pixels: a poster-sized page is drawn smaller, so the page stays light
MAX_RESULTS = 200  # results a session's viewer can open (the oldest answers' citations go first)
MAX_PAGES_SHOWN = 6  # drawn pages a session keeps (a PDF page image is up to ~2 MB of HTML)
MAX_TEXT_SHOWN = 30_000  # characters of a text page around the mark


@dataclass
class Shown:
    """What the viewer shows: which result (scope), file and page, and which citation is lit."""

    scope: str
    document: str
    page: int
    pages: int = 0
    selected: int | None = None


@dataclass
class Registry:
    """A session's results that the viewer may open: per scope (`ask-3`, `custom`), the result's
    citations and places, and the files they came from (by document name)."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    questions: list[str] = field(default_factory=list)  # the Ask thread's questions as written (for retry)
    answers: list[dict[str, Any]] = field(default_factory=list)  # the Ask thread's results (its export)
    # The last pages shown (their HTML and page count): clicking the same citation again, or
    # turning back, does not draw a heavy PDF page or read a long text file once more.
    pages_shown: dict[tuple, tuple[str, int]] = field(default_factory=dict)

    def remember(self, scope: str, details: dict[str, Any], files: dict[str, str]) -> None:
        self.results.pop(scope, None)  # (re)inserted last: the oldest results go first
        self.results[scope] = {"citations": details.get("citations") or [], "places": places(details),
                               "files": files}  # fmt: skip
        while len(self.results) > MAX_RESULTS:  # bounded, however long a session's conversation
            del self.results[next(iter(self.results))]

    def forget(self) -> None:
        self.results.clear()
        self.questions.clear()
        self.answers.clear()
        self.pages_shown.clear()

    def page_shown(self, key: tuple, draw: Callable[[], tuple[str, int]]) -> tuple[str, int]:
        """The page's HTML and page count, drawn once for the last MAX_PAGES_SHOWN keys."""
        if key not in self.pages_shown:
            self.pages_shown[key] = draw()
            while len(self.pages_shown) > MAX_PAGES_SHOWN:
                del self.pages_shown[next(iter(self.pages_shown))]
        return self.pages_shown[key]


def open_reference(workbench: Workbench, registry: Registry, reference: str, password: str | None,
                   salt: str | None, language: str) -> tuple[str, dict | None]:  # fmt: skip
    """Open what a click names (`<scope>:c:<number>` a citation, `<scope>:p:<index>` a place):
    returns the viewer's HTML and its state (None when there is nothing to show)."""
    scope, _, rest = reference.partition(":")
    kind, _, index = rest.partition(":")
    index = index.split("@")[0]  # the page script adds a click stamp, so a second click is an event too
    result = registry.results.get(scope)
    if result is None or not re.fullmatch(r"[0-9]{1,4}", index):
        return message_html(text("viewer.empty", language)), None
    if kind == "c":
        cited = next((c for c in result["citations"] if c["number"] == int(index)), None)
        if cited is None:
            return message_html(text("viewer.empty", language)), None
        shown = Shown(scope, cited["document"], cited["page"], selected=cited["number"])
    elif kind == "p" and int(index) < len(result["places"]):
        document, page = result["places"][int(index)]
        shown = Shown(scope, document, page)
    else:
        return message_html(text("viewer.empty", language)), None
    return show(workbench, registry, shown, password, salt, language)


def turn_page(workbench: Workbench, registry: Registry, state: dict | None, step: int, password: str | None,
              salt: str | None, language: str) -> tuple[str, dict | None]:  # fmt: skip
    if not state:
        return message_html(text("viewer.empty", language)), None
    shown = Shown(**state)
    shown.page = min(max(1, shown.page + step), shown.pages or shown.page)
    shown.selected = None
    return show(workbench, registry, shown, password, salt, language)


def show(workbench: Workbench, registry: Registry, shown: Shown, password: str | None, salt: str | None,
         language: str) -> tuple[str, dict | None]:  # fmt: skip
    result = registry.results.get(shown.scope)
    path = (result or {}).get("files", {}).get(shown.document)
    if path is None:
        return message_html(text("viewer.empty", language)), None
    marks = [c for c in result["citations"] if c["document"] == shown.document and c["page"] == shown.page]

    def draw() -> tuple[str, int]:
        if Path(path).suffix.lower() == ".pdf":
            shown.pages = pdf_page_count(Path(path), password)
            return _pdf_page_html(Path(path), shown, marks, password), shown.pages
        return _text_page_html(workbench, path, shown, marks, password, salt), shown.pages

    key = (path, shown.page, shown.selected, tuple((c["number"], c["text"]) for c in marks))
    try:
        body, shown.pages = registry.page_shown(key, draw)
    except UserError as exc:
        return message_html(str(exc)), asdict(shown)
    heading = text("viewer.page", language, page=shown.page, pages=shown.pages or "?")
    selected = next((c for c in marks if c["number"] == shown.selected), None)
    quote = "" if selected is None else _quote_html(selected)
    return (f'<div class="viewer-page" dir="auto"><div class="viewer-head"><b>{escape(shown.document)}</b> · '
            f"{escape(heading)}</div>{quote}{body}</div>"), asdict(shown)  # fmt: skip


def _quote_html(citation: dict[str, Any]) -> str:
    """The cited sentence in the page's own words, legible whatever the page image's size."""
    return f'<blockquote class="viewer-quote" dir="auto">[{citation["number"]}] {escape(citation["text"])}</blockquote>'


def message_html(message: str) -> str:
    return f'<div class="viewer-empty" dir="auto">{escape(message)}</div>'


def _pdf_page_html(path: Path, shown: Shown, marks: list[dict[str, Any]], password: str | None) -> str:
    image = render_pdf_page(path, shown.page, VIEW_DPI, password, max_side=MAX_VIEW_SIDE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    source = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    boxes = []
    for citation in marks:
        lit = " selected" if citation["number"] == shown.selected else ""
        for x0, y0, x1, y1 in citation.get("rects") or []:
            style = (
                f"left:{x0 * 100:.3f}%;top:{y0 * 100:.3f}%;width:{(x1 - x0) * 100:.3f}%;height:{(y1 - y0) * 100:.3f}%"
            )
            boxes.append(f'<div class="viewer-mark{lit}" data-number="{citation["number"]}" style="{style}" '
                         f'title="[{citation["number"]}] {escape(citation["text"])}"></div>')  # fmt: skip
    alt = f"{shown.document}, page {shown.page}"
    sheet = '<div class="viewer-sheet" tabindex="0" role="button" aria-label="Zoom" title="Zoom">'
    return (f'<div class="viewer-scroll">{sheet}'
            f'<img class="viewer-image" src="{source}" alt="{escape(alt)}" width="{image.width}" '
            f'height="{image.height}">{"".join(boxes)}</div></div>')  # fmt: skip


def _text_page_html(workbench: Workbench, path: str, shown: Shown, marks: list[dict[str, Any]],
                    password: str | None, salt: str | None) -> str:  # fmt: skip
    document = workbench.read([path], password, cache_salt=salt)[0]
    shown.pages = len(document.pages)
    page = next((p for p in document.pages if p.number == shown.page), None)
    page_text = page.text if page is not None else ""
    spans = sorted(span for citation in marks if (span := _find(page_text, citation["text"])) is not None)
    start = max(0, spans[0][0] - MAX_TEXT_SHOWN // 2) if spans else 0
    end = min(len(page_text), start + MAX_TEXT_SHOWN)
    pieces, cursor = [], start
    for low, high in spans:
        if low < cursor or high > end:
            continue
        pieces += [
            escape(page_text[cursor:low]),
            f'<mark class="viewer-text-mark">{escape(page_text[low:high])}</mark>',
        ]
        cursor = high
    pieces.append(escape(page_text[cursor:end]))
    return f'<div class="viewer-text">{"".join(pieces)}</div>'


def _find(page_text: str, evidence: str) -> tuple[int, int] | None:
    """Where `evidence` (the page's sentence, whitespace collapsed) stands in the page text."""
    words = evidence.replace("…", " ").split()
    if not words:
        return None
    match = re.search(r"\s+".join(re.escape(word) for word in words[:60]), page_text)
    return (match.start(), match.end()) if match else None

"""A result's sources as the page shows them: the numbered citations (the sentence each marker
stands for), grouped by file and page; the quotes that are in no document; the passages read but
not cited; map-reduce sections. Plain text in escaped HTML (a contract's `# 1. Scope` stays a
line of text), written right to left where the text is. Each citation and page is a button: the
page script sends its `data-cite` (`<scope>:c:<number>` or `<scope>:p:<place>`) to the viewer.
"""

from __future__ import annotations

from html import escape
from typing import Any

from app.i18n import text

_KINDS = {"quote": "sources.quote", "match": "sources.match", "passage": "sources.passage"}


def places(details: dict[str, Any]) -> list[tuple[str, int]]:
    """The (document, first page) of every source passage and section: what `p:<index>` opens."""
    found = [(source["document"], source["pages"][0]) for source in details.get("sources") or []]
    found += [(section["document"], section["pages"][0]) for section in details.get("sections") or []]
    return found


def sources_html(details: dict[str, Any] | None, scope: str, language: str = "en") -> str:
    """The sources panel of a finished result (empty string before there is one)."""
    if not details or "task" not in details:
        return ""
    parts = [_citations_html(details.get("citations") or [], scope, language)]
    parts.append(_unverified_html(details, language))
    parts.append(_also_read_html(details, scope, language))
    parts.append(_sections_html(details, scope, language))
    body = "".join(parts)
    if not body:
        body = f'<p class="src-none">{escape(text("sources.none", language))}</p>'
    return f'<div class="sources" dir="auto">{body}</div>'


def _citations_html(citations: list[dict[str, Any]], scope: str, language: str) -> str:
    groups: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for citation in citations:
        groups.setdefault(citation["document"], {}).setdefault(citation["page"], []).append(citation)
    html = []
    for document, pages in groups.items():
        rows = []
        for page, cited in sorted(pages.items()):
            ocr = any(citation.get("ocr") for citation in cited)
            note = f' <span class="src-ocr">({escape(text("sources.ocr", language))})</span>' if ocr else ""
            items = "".join(_citation_html(citation, scope, language) for citation in cited)
            where = escape(_page_word(page, language))
            rows.append(f'<div class="src-page"><div class="src-page-label">{where}{note}</div>{items}</div>')
        html.append(f'<div class="src-doc"><div class="src-doc-name">{escape(document)}</div>{"".join(rows)}</div>')
    return "".join(html)


def _citation_html(citation: dict[str, Any], scope: str, language: str) -> str:
    number = citation["number"]
    kind = text(_KINDS.get(citation.get("kind", ""), "sources.passage"), language)
    return (
        f'<button type="button" class="src-cite" data-cite="{scope}:c:{number}" '
        f'aria-label="[{number}] {escape(citation["document"])}, {escape(_page_word(citation["page"], language))}">'
        f'<span class="src-num">[{number}]</span> <span class="src-text">{escape(citation["text"])}</span> '
        f'<span class="src-kind">{escape(kind)}</span></button>'
    )


def _unverified_html(details: dict[str, Any], language: str) -> str:
    missing = [quote["text"] for quote in details.get("quotes") or [] if not quote.get("verified")]
    lines = [f"<li>✗ “{escape(quote)}”: {escape(text('sources.not_quote', language))}</li>" for quote in missing]
    for name, value in (details.get("unverified") or {}).items():
        lines.append(f"<li>✗ {escape(name)}: {escape(repr(value))}: {escape(text('sources.not_quote', language))}</li>")
    for name in details.get("capped") or []:
        lines.append(f"<li>⚠ {escape(name)}: {escape(text('sources.capped', language))}</li>")
    for name, start in (details.get("unfinished") or {}).items():
        lines.append(f"<li>⚠ {escape(name)}: {escape(text('sources.unfinished', language))} {escape(repr(start))}</li>")
    return f'<ul class="src-checks">{"".join(lines)}</ul>' if lines else ""


def _also_read_html(details: dict[str, Any], scope: str, language: str) -> str:
    """The passages read for the answer that no marker cites: one button per file and page."""
    cited = {(citation["document"], citation["page"]) for citation in details.get("citations") or []}
    buttons, seen = [], set()
    for index, source in enumerate(details.get("sources") or []):
        place = (source["document"], source["pages"][0])
        if place in cited or place in seen:
            continue
        seen.add(place)
        label = f"{source['document']}, {_page_word(place[1], language)}" + (" (OCR)" if source.get("ocr") else "")
        buttons.append(
            f'<button type="button" class="src-place" data-cite="{scope}:p:{index}">{escape(label)}</button>'
        )
    if not buttons:
        return ""
    return (
        f'<div class="src-also"><span>{escape(text("sources.also_read", language))}:</span> {" ".join(buttons)}</div>'
    )


def _sections_html(details: dict[str, Any], scope: str, language: str) -> str:
    sections = details.get("sections") or []
    if not sections:
        return ""
    offset = len(details.get("sources") or [])
    items = []
    for index, section in enumerate(sections):
        pages = section["pages"]
        where = f"{section['document']}, {_page_word(pages[0], language)}" + (f"-{pages[-1]}" * (pages[-1] != pages[0]))
        button = (
            f'<button type="button" class="src-place" data-cite="{scope}:p:{offset + index}">{escape(where)}</button>'
        )
        items.append(f'<li>{button}<div class="src-text">{escape(section["summary"])}</div></li>')
    title = f"{text('output.sections', language)} ({len(sections)})"
    return f'<details class="src-sections"><summary>{escape(title)}</summary><ol>{"".join(items)}</ol></details>'


def _page_word(page: int, language: str = "en") -> str:
    return text("sources.page", language, page=page)

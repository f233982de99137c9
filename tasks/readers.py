"""One reader per file format: bytes on disk -> raw page texts plus facts about the file (PDF:
tasks.pdf_reader).

Readers raise DocumentError with a message meant for the user. Formats without pages (text,
Markdown) give one page, or one per form feed; HTML gives one "page" per section, each starting
at an <h1>-<h3> heading, so its citations point somewhere; DOCX pages follow the page breaks Word
wrote into the file (explicit ones and the ones it rendered when it last saved).

Files are untrusted: every limit here (pages, unpacked size, packing ratio) keeps a hostile file
from holding the reader for minutes or filling the memory, and a parser that fails in any way
becomes a DocumentError that says the file looks damaged.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any

from tasks.charsets import decode_text, sniff
from tasks.errors import DocumentError

logger = logging.getLogger(__name__)

RawPages = tuple[list[str], dict]
MAX_TEXT_CHARS = 50 * 2**20  # as much text as the largest text file accepted (50 MB) holds
MAX_PAGES = 5_000  # keeps the worst case to seconds (README, "Measured limits")
MAX_READ_SECONDS = 120.0  # a PDF whose text takes longer to extract is refused, well above MAX_PAGES dense pages
# (OCR has limits of its own: tasks.ocr)
MAX_UNPACKED_BYTES = 256 * 2**20  # python-docx holds every part of a .docx in memory at once
MAX_PACKING_RATIO = 200  # Word XML packs ~5-30x; a zip bomb (a run of zeros) ~1,000x
_RATIO_FLOOR = 2**20  # parts smaller than this may pack as tightly as they like
_ERROR_CHARS = 160  # how much of a parser's own error message is worth showing


def check_page_count(count: int, name: str) -> None:
    if count > MAX_PAGES:
        raise DocumentError(
            f"{name}: this document has {count:,} pages; the limit is {MAX_PAGES:,} pages, split it into parts"
        )


def read_text(path: Path, name: str) -> RawPages:
    text, encoding = decode_text(path.read_bytes(), name)
    kind = "markdown" if path.suffix.lower() in (".md", ".markdown") else "text"
    return text.split("\f"), {"format": kind, "encoding": encoding}


_HIDDEN_TAGS = {"script", "style", "noscript", "template", "svg", "math", "title", "iframe", "object"}
_BLOCK_TAGS = {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header",
               "footer", "aside", "nav", "main", "blockquote", "pre", "ul", "ol", "dl", "dt", "dd", "table",
               "figure", "figcaption", "address", "form", "fieldset"}  # fmt: skip
_LINE_BREAKS = {"br", "hr"}
_SECTION_HEADINGS = {"h1", "h2", "h3"}
MAX_HTML_SECTIONS = 1_000  # later headings stay in the last section: a page of many headings is still read


class _VisibleText(HTMLParser):
    """The text a browser shows, in one pass, cut into sections at headings. (Editing a
    BeautifulSoup tree took time quadratic in the nesting depth: 100,000 nested <div>s ran for
    minutes.)"""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[list[str]] = [[]]
        self.section_has_text = False
        self.hidden = 0  # how deep inside script, style and other elements whose text is not shown

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden += 1
        if self.hidden:
            return
        if tag in _SECTION_HEADINGS and self.section_has_text and len(self.sections) < MAX_HTML_SECTIONS:
            self.sections.append([])
            self.section_has_text = False
        if tag in _BLOCK_TAGS or tag in _LINE_BREAKS:
            self.sections[-1].append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden = max(0, self.hidden - 1)
        elif not self.hidden and tag in _BLOCK_TAGS:
            self.sections[-1].append("\n")
        elif not self.hidden and tag in ("td", "th"):
            self.sections[-1].append(" | ")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.sections[-1].append(data)
            self.section_has_text = self.section_has_text or not data.isspace()


def read_html(path: Path, name: str) -> RawPages:
    markup, encoding = decode_text(path.read_bytes(), name)
    parser = _VisibleText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception as exc:  # html.parser is lenient, but hostile markup is not worth a crash
        raise DocumentError(f"{name}: could not read this HTML page ({reason(exc)})") from exc
    return [_tidy("".join(parts)) for parts in parser.sections], {"format": "html", "encoding": encoding}


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n\s*\n+", "\n\n", text)


def read_docx(path: Path, name: str) -> RawPages:
    _check_package(path, name)
    pages: list[list[str]] = [[]]
    characters = 0
    try:
        with zipfile.ZipFile(path) as package, package.open("word/document.xml") as xml:
            for block in _body_blocks(xml):
                before = len(pages[-1])
                tag = _local_name(block)
                if tag == "p":
                    _add_paragraph(block, pages)
                elif tag == "tbl":
                    pages[-1].extend(_table_rows(block))
                characters += sum(len(line) + 1 for line in pages[-1][before:])
                check_text_size(characters, name)
    except DocumentError:
        raise
    except Exception as exc:  # lxml and zipfile fed hostile bytes can fail in any way
        raise DocumentError(f"{name}: could not read this Word file, it looks damaged ({reason(exc)})") from exc
    return ["\n".join(lines) for lines in pages], {"format": "docx"}


def _body_blocks(xml: IO[bytes]) -> Iterator[Any]:
    """The body's paragraphs and tables, one at a time as the XML streams in; each is dropped once
    read, so a document of hundreds of MB of XML never sits in memory as one tree. Entities are
    not resolved and nothing is fetched (libxml2 also refuses entity expansion bombs)."""
    from lxml import etree

    for _, element in etree.iterparse(xml, events=("end",), resolve_entities=False, no_network=True, load_dtd=False):
        parent = element.getparent()
        if parent is not None and _local_name(parent) == "body":
            yield element
            element.clear()
            while element.getprevious() is not None:  # the blocks already read
                del parent[0]


def check_text_size(characters: int, name: str) -> None:
    """Refuse a document whose text alone is larger than the largest text file accepted."""
    if characters > MAX_TEXT_CHARS:
        raise DocumentError(
            f"{name}: refused: this document holds more than {MAX_TEXT_CHARS:,} characters of text (what the "
            "largest text file accepted, 50 MB, can hold: some 13 million tokens, more than any task here can "
            "use); split it into parts"
        )


def _check_package(path: Path, name: str) -> None:
    """Refuse what is not a Word package, and zip bombs before anything is unpacked: the sizes
    come from the ZIP's directory, which costs nothing to read."""
    try:
        with zipfile.ZipFile(path) as package:
            parts = package.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        with path.open("rb") as handle:
            kind = sniff(handle.read(16))
        what = f"it is {kind}" if kind else "it is not a ZIP package"
        hint = "; open it in Word and save it as .docx" if kind and ".doc" in kind else ""
        raise DocumentError(f"{name}: this is not a Word (.docx) file ({what}){hint}") from exc
    if "word/document.xml" not in {part.filename for part in parts}:
        raise DocumentError(f"{name}: this ZIP file is not a Word document (it has no word/document.xml)")
    unpacked = sum(part.file_size for part in parts)
    if unpacked > MAX_UNPACKED_BYTES:
        raise DocumentError(
            f"{name}: refused before unpacking: it would unpack to {_size(unpacked)}; "
            f"the limit is {_size(MAX_UNPACKED_BYTES)}"
        )
    for part in parts:
        if part.file_size > _RATIO_FLOOR and part.file_size > MAX_PACKING_RATIO * max(1, part.compress_size):
            raise DocumentError(
                f"{name}: refused before unpacking: {part.filename} would grow from {_size(part.compress_size)} "
                f"to {_size(part.file_size)} ({part.file_size // max(1, part.compress_size):,}x; a zip bomb?)"
            )


def _add_paragraph(paragraph, pages: list[list[str]]) -> None:
    """Append a paragraph's text, starting a new page wherever Word put a page break. Word marks
    a hard break twice (the break, then where it rendered one), so a break on a page that has no
    text yet starts nothing."""
    text: list[str] = []
    for node in paragraph.iter():
        tag = _local_name(node)
        is_break = tag == "br" and node.get(_qualified("type")) == "page"
        if is_break or tag == "lastRenderedPageBreak":
            if text or any(line.strip() for line in pages[-1]):
                pages[-1].append("".join(text))
                pages.append([])
            text = []
        elif tag == "t" and node.text:
            text.append(node.text)
        elif tag == "tab":
            text.append("\t")
    pages[-1].append("".join(text))


def _table_rows(table) -> list[str]:
    rows = []
    for row in table.iter(_qualified("tr")):
        cells = ["".join(t.text or "" for t in cell.iter(_qualified("t"))) for cell in row.iter(_qualified("tc"))]
        rows.append(" | ".join(cell.strip() for cell in cells))
    return rows


def _local_name(node) -> str:
    """`p` for a `{namespace}p` element; "" for comments and processing instructions."""
    return node.tag.rsplit("}", 1)[-1] if isinstance(node.tag, str) else ""


def _qualified(tag: str) -> str:
    return "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}" + tag


def _size(count: int) -> str:
    return f"{count / 2**20:,.1f} MB" if count >= 2**20 else f"{count / 2**10:,.1f} KB"


def reason(exc: Exception) -> str:
    """A parser's own message, on one short line (it can be long, or empty)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"

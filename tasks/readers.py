"""One reader per file format: bytes on disk -> raw page texts plus facts about the file.

Readers raise DocumentError with a message meant for the user. Formats without pages (text,
Markdown, HTML) give one page, or one per form feed; DOCX pages follow the page breaks Word
wrote into the file (explicit ones and the ones it rendered when it last saved).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from tasks.errors import DocumentError

logger = logging.getLogger(__name__)

RawPages = tuple[list[str], dict]


def read_pdf(path: Path, name: str) -> RawPages:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    with path.open("rb") as handle:
        if not handle.read(1024).lstrip().startswith(b"%PDF"):
            raise DocumentError(f"{name}: this is not a PDF file (it has no PDF header)")
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{name}: this PDF is encrypted and needs a password to open")
        texts = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentError(f"{name}: could not read this PDF, it looks damaged ({exc})") from exc
    return texts, {"format": "pdf"}


def read_text(path: Path, name: str) -> RawPages:
    text, encoding = decode_text(path.read_bytes(), name)
    kind = "markdown" if path.suffix.lower() in (".md", ".markdown") else "text"
    return text.split("\f"), {"format": kind, "encoding": encoding}


def read_html(path: Path, name: str) -> RawPages:
    from bs4 import BeautifulSoup

    markup, encoding = decode_text(path.read_bytes(), name)
    soup = BeautifulSoup(markup, "html.parser")
    for hidden in soup(["script", "style", "noscript", "template", "svg", "head", "iframe", "object"]):
        hidden.decompose()
    for block in soup.find_all(["p", "div", "li", "tr", "br", "h1", "h2", "h3", "h4", "h5", "h6", "section"]):
        block.insert_after("\n")
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" | ")
    text = re.sub(r"[ \t]+", " ", soup.get_text())
    text = re.sub(r"\n\s*\n+", "\n\n", text)
    return [text], {"format": "html", "encoding": encoding}


def read_docx(path: Path, name: str) -> RawPages:
    import zipfile

    from docx import Document as open_docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = open_docx(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(f"{name}: could not read this Word file, it looks damaged ({exc})") from exc
    pages: list[list[str]] = [[]]
    for block in document.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            _add_paragraph(block, pages)
        elif tag == "tbl":
            pages[-1].extend(_table_rows(block))
    return ["\n".join(lines) for lines in pages], {"format": "docx"}


def _add_paragraph(paragraph, pages: list[list[str]]) -> None:
    """Append a paragraph's text, starting a new page wherever Word put a page break. Word marks
    a hard break twice (the break, then where it rendered one), so a break on a page that has no
    text yet starts nothing."""
    text: list[str] = []
    for node in paragraph.iter():
        tag = node.tag.rsplit("}", 1)[-1]
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


def _qualified(tag: str) -> str:
    return "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}" + tag


def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """UTF-8 first (with or without BOM); otherwise the encoding charset-normalizer detects."""
    for bom, encoding in ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                          (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):  # fmt: skip
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise DocumentError(f"{name}: this {encoding.upper()} text file is damaged ({exc.reason})") from exc
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{name}: this looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise DocumentError(f"{name}: could not tell which text encoding this file uses")
    logger.info("%s is not UTF-8; decoded as %s", name, best.encoding)
    return str(best), best.encoding

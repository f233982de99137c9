"""Read a file into a `Document`: pages of text with 1-based page numbers.

PDF through pypdf (one page per PDF page); TXT and Markdown as UTF-8, falling back to a detected
encoding (charset-normalizer), with form feeds as page breaks. Pure Python: no torch, no gradio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tasks.errors import DocumentError

logger = logging.getLogger(__name__)

PDF_SUFFIXES = (".pdf",)
TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown")
SUPPORTED_SUFFIXES = PDF_SUFFIXES + TEXT_SUFFIXES


@dataclass(frozen=True)
class Page:
    number: int  # 1-based, as people count pages
    text: str


@dataclass(frozen=True)
class Document:
    name: str
    pages: tuple[Page, ...]
    meta: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages)

    @property
    def char_count(self) -> int:
        return sum(len(page.text) for page in self.pages)


def load_document(path: str | Path, name: str | None = None) -> Document:
    """Read `path` as a document. Raises DocumentError with a message meant for the user."""
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise DocumentError(f"{name}: file not found")
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        pages, meta = _read_pdf(path, name)
    elif suffix in TEXT_SUFFIXES:
        pages, meta = _read_text(path, name)
    else:
        supported = ", ".join(SUPPORTED_SUFFIXES)
        raise DocumentError(f"{name}: unsupported file type {suffix or '(none)'}; supported: {supported}")
    if not any(page.text.strip() for page in pages):
        raise DocumentError(_no_text_message(name, suffix))
    return Document(name=name, pages=tuple(pages), meta=meta)


def _read_pdf(path: Path, name: str) -> tuple[list[Page], dict]:
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
    pages = [Page(number, _tidy(text)) for number, text in enumerate(texts, start=1)]
    return pages, {"format": "pdf", "pdf_pages": len(pages)}


def _read_text(path: Path, name: str) -> tuple[list[Page], dict]:
    data = path.read_bytes()
    text, encoding = _decode_text(data, name)
    chunks = text.split("\f") if "\f" in text else [text]
    pages = [Page(number, _tidy(chunk)) for number, chunk in enumerate(chunks, start=1)]
    kind = "markdown" if path.suffix.lower() in (".md", ".markdown") else "text"
    return pages, {"format": kind, "encoding": encoding}


def _decode_text(data: bytes, name: str) -> tuple[str, str]:
    """UTF-8 first (with or without BOM); otherwise the encoding charset-normalizer detects."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
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


def _tidy(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


def _no_text_message(name: str, suffix: str) -> str:
    if suffix in PDF_SUFFIXES:
        return (
            f"{name}: this PDF has no text layer (it is probably scanned images); "
            "run it through OCR first, then upload the result"
        )
    return f"{name}: the file is empty"

"""Read a file into a `Document`: cleaned pages of text with 1-based page numbers.

PDF (pypdf), DOCX (python-docx), HTML (BeautifulSoup), TXT and Markdown (UTF-8, else the detected
encoding). Text is normalized (tasks.cleaning) and its language detected (tasks.language).
Pure Python: no torch, no gradio.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from tasks import readers
from tasks.cleaning import clean_pages
from tasks.errors import DocumentError
from tasks.language import detect_language

READERS = {
    ".pdf": readers.read_pdf,
    ".docx": readers.read_docx,
    ".html": readers.read_html,
    ".htm": readers.read_html,
    ".txt": readers.read_text,
    ".text": readers.read_text,
    ".md": readers.read_text,
    ".markdown": readers.read_text,
}
SUPPORTED_SUFFIXES = tuple(READERS)


@dataclass(frozen=True)
class Page:
    number: int  # 1-based, as people count pages
    text: str


@dataclass(frozen=True)
class Document:
    name: str
    pages: tuple[Page, ...]
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages)

    @property
    def char_count(self) -> int:
        return sum(len(page.text) for page in self.pages)

    @property
    def language(self) -> str | None:
        return self.meta.get("language")

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the content (not the file name), e.g. for caching its prefill."""
        digest = hashlib.sha256()
        for page in self.pages:
            digest.update(f"{page.number}\0{page.text}\0".encode())
        return digest.hexdigest()[:32]


def load_document(path: str | Path, name: str | None = None) -> Document:
    """Read `path` as a document. Raises DocumentError with a message meant for the user."""
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise DocumentError(f"{name}: file not found")
    suffix = path.suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        supported = ", ".join(SUPPORTED_SUFFIXES)
        raise DocumentError(f"{name}: unsupported file type {suffix or '(none)'}; supported: {supported}")
    raw_pages, meta = reader(path, name)
    texts = clean_pages([_tidy(text) for text in raw_pages], from_pdf=meta["format"] == "pdf")
    if not any(text.strip() for text in texts):
        raise DocumentError(_no_text_message(name, meta["format"]))
    pages = tuple(Page(number, text) for number, text in enumerate(texts, start=1))
    meta["language"] = detect_language("\n".join(texts))
    meta["empty_pages"] = [page.number for page in pages if not page.text.strip()]
    return Document(name=name, pages=pages, meta=meta)


def _tidy(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


def _no_text_message(name: str, kind: str) -> str:
    if kind == "pdf":
        return (
            f"{name}: this PDF has no text layer (it is probably scanned images); "
            "run it through OCR first, then upload the result"
        )
    return f"{name}: the file is empty"

"""Read a file into a `Document`: cleaned pages of text with 1-based page numbers.

PDF (PDFium, and Tesseract OCR for scanned pages: tasks.pdf_reader), DOCX (python-docx), HTML
(html.parser), TXT and Markdown (UTF-8, else the detected encoding). Text is normalized
(tasks.cleaning) and its language detected (tasks.language).
Files and their names are untrusted: sizes and page counts are limited, and the name shown (and
quoted to the model) loses path parts and control characters. Pure Python: no torch, no gradio.
"""

from __future__ import annotations

import errno
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from tasks import readers
from tasks.cleaning import clean_pages, substitute
from tasks.errors import DocumentError
from tasks.language import detect_language
from tasks.ocr import OcrRequest
from tasks.pdf_reader import read_pdf
from tasks.positions import PageWords

READERS = {
    ".pdf": read_pdf,
    ".docx": readers.read_docx,
    ".html": readers.read_html,
    ".htm": readers.read_html,
    ".txt": readers.read_text,
    ".text": readers.read_text,
    ".md": readers.read_text,
    ".markdown": readers.read_text,
}
SUPPORTED_SUFFIXES = tuple(READERS)
READ_SCANS = OcrRequest()  # scanned PDF pages are read by OCR (no progress, no cache)
MAX_FILE_BYTES = 50 * 2**20  # also the web UI's default upload limit (app.launch.DEFAULT_MAX_FILE_MB)
NO_DOCUMENTS = "upload a document first (PDF, DOCX, HTML, TXT or Markdown)"
MAX_NAME_CHARS = 120
# Control characters leave the text (a stray NUL, a terminal escape); vertical tab and form feed
# become line breaks. Tab, line feed and carriage return stay.
_CONTROLS = {code: None for code in (*range(0, 9), *range(14, 32), 127, *range(128, 160))} | {11: "\n", 12: "\n"}
# Spaces before a line end, matched only from the start of a run of spaces: tried at every space
# of a long run that ends in a letter, the pattern would rescan the rest of the run each time.
_TRAILING_SPACE = re.compile(r"(?<![^\S\n])[^\S\n]+(?=\n|\Z)")


@dataclass(frozen=True)
class Page:
    number: int  # 1-based, as people count pages
    text: str
    ocr: bool = False  # read by OCR from an image of the page: its text may hold misread words
    words: PageWords | None = field(default=None, compare=False, repr=False)  # an OCR page's word boxes


@dataclass(frozen=True)
class Document:
    name: str
    pages: tuple[Page, ...]
    meta: dict = field(default_factory=dict, compare=False)
    path: Path | None = field(default=None, compare=False, repr=False)  # the file, to show its pages again
    # An encrypted PDF's password, to open the file again for a page or a highlight; never in meta or JSON.
    password: str | None = field(default=None, compare=False, repr=False)

    @property
    def ocr_pages(self) -> list[int]:
        return [page.number for page in self.pages if page.ocr]

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages)

    @property
    def char_count(self) -> int:
        return sum(len(page.text) for page in self.pages)

    @property
    def language(self) -> str | None:
        return self.meta.get("language")


def load_document(
    path: str | Path, name: str | None = None, password: str | None = None, ocr: OcrRequest | None = READ_SCANS
) -> Document:
    """Read `path` as a document (`password` opens an encrypted PDF; `ocr` says how scanned PDF
    pages are read, None: not at all). Raises DocumentError with a message meant for the user."""
    path = Path(path)
    name = display_name(name or path.name)
    check_file(path, name)
    reader = READERS[path.suffix.lower()]
    try:
        raw_pages, meta = reader(path, name, password, ocr) if reader is read_pdf else reader(path, name)
    except OSError as exc:  # vanished or unreadable between the check and the read
        raise DocumentError(f"{name}: could not open the file ({exc.strerror or exc})") from exc
    readers.check_page_count(len(raw_pages), name)
    readers.check_text_size(sum(len(text) for text in raw_pages), name)
    texts = clean_pages([_tidy(text) for text in raw_pages], from_pdf=meta["format"] == "pdf")
    if not any(text.strip() for text in texts):
        raise DocumentError(_no_text_message(name, meta))
    ocr_words: dict[int, PageWords] = meta.pop("ocr_words", {})
    pages = tuple(
        Page(index + 1, text, ocr=bool(text.strip()) and index in ocr_words, words=ocr_words.get(index))
        for index, text in enumerate(texts)
    )
    meta["language"] = detect_language("\n".join(texts))
    meta["empty_pages"] = [page.number for page in pages if not page.text.strip()]
    return Document(name=name, pages=pages, meta=meta, path=path.resolve(), password=password or None)


def display_name(raw: str) -> str:
    """A file name fit to show and to quote to the model: its last path part (either slash), with
    control and invisible formatting characters (newlines, terminal escapes, right-to-left
    overrides that disguise `evil.exe.txt`) gone, shortened in the middle when very long."""
    name = re.split(r"[/\\]", raw)[-1]
    name = "".join(_visible(char) for char in name)
    name = " ".join(name.split())
    if name in ("", ".", ".."):
        return "document"
    if len(name) > MAX_NAME_CHARS:
        tail = 20  # keeps the extension and any "(2)" the workbench added
        name = name[: MAX_NAME_CHARS - tail - 1] + "…" + name[-tail:]
    return name


def _visible(char: str) -> str:
    category = unicodedata.category(char)
    if category in ("Cc", "Zl", "Zp"):
        return " "
    if category == "Cs":  # a byte that was not UTF-8 in the file system's name
        return "\ufffd"
    return "" if category == "Cf" else char


def check_file(path: str | Path, name: str | None = None) -> None:
    """A file that load_document can read: it exists, has a supported suffix, and is a regular
    file of an acceptable size. Cheap (one stat, nothing read), so the command line checks its
    files with it before it loads the model. Raises DocumentError naming the file (`name`, else
    the path's shortened last part)."""
    path = Path(path)
    name = display_name(name or path.name)
    try:
        info = path.stat()  # one call for all the checks below; follows links, as reading would
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise DocumentError(f"{name}: file not found") from exc
    except (OSError, ValueError) as exc:  # a name too long for the file system, a loop of links
        raise DocumentError(f"{name}: could not open the file ({file_error_reason(exc)})") from exc
    suffix = path.suffix.lower()
    if suffix not in READERS:
        supported = ", ".join(SUPPORTED_SUFFIXES)
        raise DocumentError(f"{name}: unsupported file type {suffix or '(none)'}; supported: {supported}")
    if stat.S_ISDIR(info.st_mode):
        raise DocumentError(f"{name}: this is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):  # a device or a pipe (/dev/zero, /dev/urandom) would never end
        raise DocumentError(f"{name}: this is not a regular file")
    size = info.st_size
    if size == 0:
        raise DocumentError(f"{name}: the file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise DocumentError(
            f"{name}: the file is {size / 2**20:,.1f} MB; the limit is {MAX_FILE_BYTES / 2**20:,.1f} MB"
        )


def file_error_reason(exc: OSError | ValueError) -> str:
    """Why a file could not be opened, in words, without its (possibly very long) name."""
    if isinstance(exc, ValueError):  # Python refuses a name with a NUL byte before asking the system
        return "the file name is not valid"
    if exc.errno == errno.ENAMETOOLONG:
        return "the file name is too long"
    return (exc.strerror or type(exc).__name__).lower()


def _tidy(text: str) -> str:
    """Line ends as \n, control characters out, no spaces at line ends (a regular expression, not
    a list of lines: a file of millions of short lines would cost GBs of line strings)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_CONTROLS)
    return substitute(_TRAILING_SPACE, lambda _: "", text).strip()


def _no_text_message(name: str, meta: dict) -> str:
    kind = meta["format"]
    if kind == "pdf" and meta.get("ocr_pages"):
        return f"{name}: no text found: this PDF has no text layer, and OCR found no text in its page images"
    if kind == "pdf" and meta.get("scanned_pages"):  # the caller turned OCR off
        return f"{name}: this PDF has no text layer (it is probably scanned images), and OCR was not asked for"
    if kind == "pdf":
        return f"{name}: the file is empty: this PDF's pages have no text and draw nothing"
    if kind == "html":
        return f"{name}: the file is empty: this page has no visible text"
    if kind == "docx":
        return f"{name}: the file is empty: this Word document has no text"
    return f"{name}: the file is empty (it has no text)"

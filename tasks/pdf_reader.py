"""PDF pages -> text, with PDFium (pypdfium2: the PDF engine of Chrome, bundled in its wheels).

A PDF is read in two passes:
1. **Checks, with pypdf.** Its parser refuses what PDFium would take on trust: loops and runaway
   depth in the page tree, and decompression bombs (a content stream that unpacks to more than 75
   MB, or pages that unpack to more than MAX_UNPACKED_BYTES together). This pass decodes the page
   content streams once, without parsing them (zlib's speed), and keeps nothing.
2. **Text, with PDFium**, page by page: 10-20x faster than pypdf's `extract_text`, and it keeps
   the spaces of justified lines that pypdf glued together (`Periodikum,welcheseinen...`). A page
   set in two columns reads column by column (tasks.columns). A page with no text layer, or one
   that is only garbage, is read by OCR (tasks.ocr), when the caller allows it.

Both passes share the limits of tasks.readers (pages, characters, seconds), and a parser that fails
in any way becomes a DocumentError that says the file looks damaged.
"""

from __future__ import annotations

import ctypes
import logging
import re
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from tasks import ocr as ocr_engine
from tasks import pdfium, readers
from tasks.accents import char_box, has_accents, text_with_accents_placed
from tasks.charsets import sniff
from tasks.columns import reading_regions
from tasks.errors import DocumentError
from tasks.readers import RawPages, check_page_count, check_text_size, reason

# pypdf logs a warning for each damaged object it skips; a hostile file can have thousands.
logging.getLogger("pypdf").setLevel(logging.ERROR)

MAX_UNPACKED_BYTES = 512 * 2**20  # the pages' content streams, unpacked, together
MAX_CHECK_SECONDS = 120.0  # for the checks; reading the text has readers.MAX_READ_SECONDS
MAX_ACCENT_PAGE_CHARS = 50_000  # pages longer than any real one keep PDFium's text as it is
MAX_PAGE_TEXT_BYTES = 512 * 2**10  # of text shown on one page (a dense page shows some 10 KB)
# What PDFium puts where a word was broken with a hyphen at a line end (FPDFText_GetText: U+FFFE).
HYPHENS_AT_LINE_END = str.maketrans({"\x02": "-\n", "\ufffe": "-\n"})
_MIN_GARBAGE_CHARS = 20


def read_pdf(path: Path, name: str, password: str | None = None, ocr: ocr_engine.OcrRequest | None = None) -> RawPages:
    """The text of every page (OCR for scanned pages when `ocr` is given), and facts about the
    file: {"format": "pdf", "ocr_pages": [...], "ocr_words": {index: PageWords}, ...}."""
    _check_header(path, name)
    page_count = check_structure(path, name, password)
    try:
        with pdfium.LOCK:
            document = pdfium.open_document(path, password)
    except Exception as exc:  # PdfiumError: the file, or the password
        raise _open_error(exc, name, password) from exc
    try:
        texts = list(_page_texts(document, name, page_count))
        meta: dict = {"format": "pdf"}
        # A page that draws nothing at all is blank, not scanned: nothing for OCR to read.
        scanned = [index for index, text in enumerate(texts) if needs_ocr(text) and _draws_something(document, index)]
        if scanned:
            _read_scans(document, path, name, texts, scanned, meta, ocr)
    finally:
        with pdfium.LOCK:
            document.close()
    return texts, meta


def _read_scans(document, path: Path, name: str, texts: list[str], scanned: list[int], meta: dict,
                ocr: ocr_engine.OcrRequest | None) -> None:  # fmt: skip
    try:
        ocr_engine.read_scanned_pages(document, path, name, texts, scanned, meta, ocr)
    except DocumentError:
        raise
    except Exception as exc:  # PdfiumError rendering a page: the page is damaged
        raise DocumentError(
            f"{name}: could not render a scanned page for OCR, it looks damaged ({reason(exc)})"
        ) from exc


def _check_header(path: Path, name: str) -> None:
    with path.open("rb") as handle:
        head = handle.read(1024)
    if not head.lstrip().startswith(b"%PDF"):
        kind = sniff(head)
        raise DocumentError(f"{name}: this is not a PDF file ({f'it is {kind}' if kind else 'it has no PDF header'})")


def check_structure(path: Path, name: str, password: str | None) -> int:
    """The page count, once pypdf has walked the page tree and unpacked every content stream
    (and form) within its limits; raises DocumentError with what is wrong."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, LimitReachedError

    try:
        reader = PdfReader(path)
        _unlock(reader, name, password)
        count = len(reader.pages)
        check_page_count(count, name)
        _check_unpacked_size(reader, name)
    except DocumentError:
        raise
    except DependencyError as exc:
        if "cryptography" in str(exc).lower() or "aes" in str(exc).lower():
            raise DocumentError(f"{name}: opening this encrypted PDF needs the 'cryptography' package") from exc
        raise DocumentError(f"{name}: refused: this PDF needs a decoder that is not installed ({reason(exc)})") from exc
    except LimitReachedError as exc:  # pypdf's guards: decompression bombs, huge arrays, deep page trees
        raise DocumentError(
            f"{name}: refused: this PDF exceeds a safety limit of the PDF reader ({reason(exc)})"
        ) from exc
    except Exception as exc:  # a parser fed hostile bytes can fail in any way: the file is damaged
        raise DocumentError(f"{name}: could not read this PDF, it looks damaged or incomplete ({reason(exc)})") from exc
    return count


def _unlock(reader, name: str, password: str | None) -> None:
    """Decrypt with the password (or the empty one, which many 'protected' PDFs use)."""
    if not reader.is_encrypted or reader.decrypt(password or ""):
        return
    if password and reader.decrypt(""):
        return
    raise _password_error(name, password)


def _password_error(name: str, password: str | None) -> DocumentError:
    if password:
        return DocumentError(f"{name}: wrong password for this encrypted PDF")
    return DocumentError(f"{name}: this PDF is encrypted and needs a password to open (command line: --password)")


def _check_unpacked_size(reader, name: str) -> None:
    """Unpack each content stream and form once (pages and forms may share them; nothing is kept)
    and refuse a PDF whose streams unpack to more than MAX_UNPACKED_BYTES together (pypdf refuses
    a single stream over its own limit), or a page that draws more than MAX_PAGE_TEXT_BYTES of text
    as drawn, every form counted each time the page draws it (a 1 KB file that draws one form
    thousands of times made PDFium hold 1.2 million characters, 400 MB, for one page)."""
    drawing, started = _Drawing(name), time.monotonic()
    for number, page in enumerate(reader.pages, start=1):
        text_bytes = drawing.page(page)
        if text_bytes > MAX_PAGE_TEXT_BYTES:
            raise DocumentError(
                f"{name}: refused: page {number} draws more than {MAX_PAGE_TEXT_BYTES // 2**10:,} KB of text (a form "
                "drawn again and again?)"
            )
        if time.monotonic() - started > MAX_CHECK_SECONDS:
            raise DocumentError(f"{name}: refused: checking this PDF took more than {MAX_CHECK_SECONDS:.0f} seconds")


_MAX_FORM_DEPTH = 12
_DRAWS_FORM = re.compile(rb"/([^\s/\[\]()<>{}%]+)\s*Do\b")
_INLINE_IMAGE_START = re.compile(rb"\bBI\b")
_STRING = re.compile(rb"\((?:[^()\\]|\\.)*\)|<[0-9A-Fa-f\s]+>")  # a string of text to show (near enough)


def _without_inline_images(data: bytes) -> bytes:
    """The content without its inline images (BI ... ID binary EI): their bytes are no text. One pass:
    each search starts where the last image ended, and an image without its end runs to the end."""
    parts, at = [], 0
    while (start := _INLINE_IMAGE_START.search(data, at)) is not None:
        parts.append(data[at : start.start()])
        end = data.find(b"EI", start.end())
        if end < 0:
            return b"".join(parts)
        at = end + 2
    parts.append(data[at:])
    return b"".join(parts)


class _Drawing:
    """What the pages draw, each stream unpacked once: the bytes unpacked in all, and per page the
    bytes of text it shows with its forms expanded (a form's own count is kept by its object)."""

    def __init__(self, name: str):
        self.name = name
        self.unpacked = 0
        self.streams: dict[int, int] = {}  # stream object -> text bytes it draws, forms expanded

    def page(self, page) -> int:
        from pypdf.generic import ArrayObject

        contents = page.get("/Contents")
        items = contents.get_object() if contents is not None else []
        items = list(items) if isinstance(items, ArrayObject) else [contents] if contents is not None else []
        return sum(self._stream(item, page.get("/Resources"), 0) for item in items)

    def _stream(self, reference, resources, depth: int) -> int:
        stream = reference.get_object() if reference is not None else None
        if not hasattr(stream, "get_data"):
            return 0
        key = getattr(reference, "idnum", None) or id(stream)
        if key in self.streams:
            return self.streams[key]
        self.streams[key] = 0  # a form that draws itself counts once (PDFium stops the recursion)
        data = self._unpack(stream)
        drawn = sum(len(string) for string in _STRING.findall(_without_inline_images(data)))
        if depth < _MAX_FORM_DEPTH:
            own = _dictionary(stream.get("/Resources")) if stream.get("/Subtype") == "/Form" else {}
            xobjects = _dictionary((own or _dictionary(resources)).get("/XObject"))
            for form in _DRAWS_FORM.findall(data):
                item = xobjects.get("/" + form.decode("latin-1"))
                if _dictionary(item).get("/Subtype") == "/Form":
                    drawn += self._stream(item, own or resources, depth + 1)
        self.streams[key] = drawn
        return drawn

    def _unpack(self, stream) -> bytes:
        from pypdf.filters import decode_stream_data

        data = decode_stream_data(stream) if "/Filter" in stream else stream.get_data()
        self.unpacked += len(data)
        if self.unpacked > MAX_UNPACKED_BYTES:
            raise DocumentError(
                f"{self.name}: refused: this PDF's pages unpack to more than {MAX_UNPACKED_BYTES // 2**20:,} MB of "
                "drawing instructions (a decompression bomb?)"
            )
        return data


def _dictionary(item) -> dict:
    """The dictionary (or stream) an object or a reference stands for; {} for anything else."""
    item = item.get_object() if item is not None else None
    return item if hasattr(item, "values") and hasattr(item, "get") else {}


def _open_error(exc: Exception, name: str, password: str | None) -> DocumentError:
    text = str(exc)
    if "password" in text.lower():  # pypdf accepted it (an owner password, say); PDFium did not
        return _password_error(name, password)
    return DocumentError(f"{name}: could not read this PDF, it looks damaged or incomplete ({reason(exc)})")


def _page_texts(document, name: str, page_count: int) -> Iterator[str]:
    """Every page's text, within the text and time limits as it goes: pages may share one content
    stream, so a small file can hold thousands of copies of a long text, or of a slow one."""
    characters, started = 0, time.monotonic()
    for index in range(page_count):
        try:
            text = page_text(document, index)
        except Exception as exc:  # PdfiumError: a page PDFium cannot load is damaged
            raise DocumentError(
                f"{name}: could not read page {index + 1} of this PDF, it looks damaged ({reason(exc)})"
            ) from exc
        characters += len(text)
        check_text_size(characters, name)
        yield text
        if time.monotonic() - started > readers.MAX_READ_SECONDS and index + 1 < page_count:
            raise DocumentError(
                f"{name}: refused: reading this PDF's text took more than {readers.MAX_READ_SECONDS:.0f} seconds for "
                f"{index + 1:,} of its {page_count:,} pages; split it into parts"
            )


def page_text(document, index: int) -> str:
    """One page's text in reading order (two columns: left, then right). A word broken with a
    hyphen at a line end comes as `recog-` and `nize` on two lines, as pdftotext writes it: the
    cleaning step (tasks.cleaning) rejoins it, or keeps the hyphen of a compound (`well-known`)."""
    with pdfium.LOCK:
        return _page_text(document, index)


def _page_text(document, index: int) -> str:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            regions = reading_regions(text_runs(textpage), page.get_width())
            if regions is None:  # every character, also those drawn off the page (pages with a wrong size exist)
                text = whole_text(textpage)  # with the line breaks PDFium adds (the bounded text drops some)
                text = footnote_marks_apart(textpage, text)
            else:
                text = "\n".join(textpage.get_text_bounded(*region) for region in regions)
            if has_accents(text) and textpage.count_chars() <= MAX_ACCENT_PAGE_CHARS:  # old TeX: accents apart
                text = text_with_accents_placed(textpage, regions)
        finally:
            textpage.close()
    finally:
        page.close()
    return text.translate(HYPHENS_AT_LINE_END)


def whole_text(textpage) -> str:
    """All of the page's text, as FPDFText_GetText gives it (pypdfium2's get_text_range recurses
    once per leading NUL character: a few thousand of them raised RecursionError)."""
    import pypdfium2.raw as pdfium_c

    count = textpage.count_chars()
    if count <= 0:
        return ""
    buffer = (ctypes.c_ushort * (2 * count + 1))()  # room for surrogate pairs
    written = pdfium_c.FPDFText_GetText(textpage, 0, count, buffer)
    return bytes(memoryview(buffer))[: max(0, written - 1) * 2].decode("utf-16-le", "replace")


_LETTER_THEN_DIGIT = re.compile(r"[^\W\d_](?=\d)")


def footnote_marks_apart(textpage, text: str) -> str:
    """`KNUTH2` -> `KNUTH 2` where the 2 is a footnote mark: smaller and raised above the line
    (PDFium adds no space before it, and BM25 would not find `Knuth`). A subscript (`CO2`) is not
    raised and keeps its place. `text` is the page's whole text (its indexes are PDFium's)."""
    import pypdfium2.raw as pdfium_c

    cuts = []
    for match in _LETTER_THEN_DIGIT.finditer(text):
        letter, digit = (pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, index)
                         for index in (match.start(), match.start() + 1))  # fmt: skip
        letter_box, digit_box = char_box(textpage, letter), char_box(textpage, digit)
        if letter_box is None or digit_box is None:
            continue
        size = pdfium_c.FPDFText_GetFontSize
        smaller = size(textpage, digit) < 0.85 * size(textpage, letter)
        raised = digit_box[1] > letter_box[1] + 0.25 * (letter_box[3] - letter_box[1])
        if smaller and raised:
            cuts.append(match.start() + 1)
    for cut in reversed(cuts):
        text = text[:cut] + " " + text[cut:]
    return text


def _draws_something(document, index: int) -> bool:
    import pypdfium2.raw as pdfium_c

    with pdfium.LOCK:
        page = document[index]
        try:
            return pdfium_c.FPDFPage_CountObjects(page) > 0
        finally:
            page.close()


def text_runs(textpage) -> list[tuple[float, float, float, float]]:
    """The rectangles of the page's runs of text (PDFium joins a line's characters into one)."""
    return [textpage.get_rect(index) for index in range(textpage.count_rects())]


def needs_ocr(text: str) -> bool:
    """A page with no text, or one whose text is mostly not text: characters a font without a
    Unicode map leaves (U+FFFD, private use, control characters), or hardly a letter or digit among
    what is not punctuation (the dot leaders of a table of contents are punctuation)."""
    visible = [char for char in text if not char.isspace()]
    if not visible:
        return True
    if len(visible) < _MIN_GARBAGE_CHARS:
        return False
    broken = sum(char == "\ufffd" or unicodedata.category(char) in ("Co", "Cc", "Cn") for char in visible)
    wordlike = [char for char in visible if not unicodedata.category(char).startswith("P")]
    readable = sum(char.isalnum() for char in wordlike)
    return broken > 0.25 * len(visible) or readable < 0.3 * len(wordlike)

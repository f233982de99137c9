"""Where text is on a PDF page: the rectangles that highlight a quoted span, and the page as an image.

Word boxes cost memory only where they cannot be had again cheaply: pages read by OCR keep theirs
(`Page.words`, a few KB a page). A page with a text layer keeps none; its words and boxes come from
the PDF on demand, one page at a time, when a passage on it is to be shown.

Every box is a share of the page as it is shown (0 to 1, from the top left corner, after the page's
own rotation), so it fits a rendering of the page at any size.

A span is found in a page's words by its letters and digits alone, without case: the text a
person sees went through cleaning (hyphenated words rejoined, ligatures spelled out, running
headers dropped), so the span's spaces, hyphens and punctuation need not match the page's.
"""

from __future__ import annotations

import ctypes
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tasks import pdfium
from tasks.accents import char_box, unicode_at
from tasks.columns import reading_regions, region_of
from tasks.errors import DocumentError

if TYPE_CHECKING:
    from PIL.Image import Image

    from tasks.documents import Document

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 as shares of the shown page, from its top left
MAX_RENDER_PIXELS = 40_000_000  # a page image for the screen or for OCR (A4 at 300 dpi is 8.7 million)
MAX_RENDER_SIDE = 20_000
_GRID = 10_000  # PDFium maps points to whole device pixels: map onto a fine grid, then divide
_SAME_LINE = 0.5  # two words are on one line when their heights overlap by half the smaller one


@dataclass(frozen=True)
class PageWords:
    """A page's words in reading order, each with its box."""

    words: tuple[str, ...]
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class Highlight:
    """What to draw over a page to show a span: `rects` (one per line the span covers, as shares
    of the shown page, from its top left); `words` are the page's words it covers."""

    page: int
    rects: tuple[Box, ...]
    words: tuple[str, ...]
    ocr: bool


def highlight(document: Document, page_number: int, span: str, password: str | None = None) -> Highlight | None:
    """The rectangles that cover `span` (a quote or a passage of the page's text) on page
    `page_number` (1-based) of a PDF `document`; None when the span is not on that page. The
    document's own password (the one it was read with) opens it again when none is given."""
    page = _page(document, page_number)
    password = password or document.password
    words = page.words if page.words is not None else text_layer_words(_source(document), page_number, password)
    found = find_span(words.words, span)
    if found is None:
        return None
    first, last = found
    return Highlight(page_number, tuple(line_rects(words.boxes[first : last + 1])), words.words[first : last + 1],
                     page.ocr)  # fmt: skip


def render_page(document: Document, page_number: int, dpi: float = 110, password: str | None = None) -> Image:
    """Page `page_number` (1-based) of a PDF `document` as an image (PDFium renders it), at `dpi`,
    or smaller where that would be more than MAX_RENDER_PIXELS."""
    _page(document, page_number)
    with _opened_page(_source(document), password or document.password, page_number, document.name) as page:
        return image_of(page, dpi)


def render_pdf_page(
    path: Path, page_number: int, dpi: float = 110, password: str | None = None, max_side: int | None = None
) -> Image:
    """Page `page_number` (1-based) of the PDF at `path` as an image, without reading the document
    again (the viewer shows any page of a file it has); DocumentError for a page it does not have.
    With `max_side`, a page larger than that many pixels at `dpi` is drawn smaller (a poster-sized
    page is not rendered at full size to be shown in a column)."""
    with _opened_page(path, password, page_number, path.name) as page:
        if max_side is not None:
            longest = max(page.get_size()) / 72  # inches
            dpi = min(dpi, max_side / max(longest, 1e-6))
        return image_of(page, dpi)


def pdf_page_count(path: Path, password: str | None = None) -> int:
    """How many pages the PDF at `path` has (DocumentError when it cannot be opened)."""
    with pdfium.LOCK:
        pdf = open_pdf(path, password)
        try:
            return len(pdf)
        finally:
            pdf.close()


def image_of(page, dpi: float, grayscale: bool = False) -> Image:
    """A PDFium page rendered (hold pdfium.LOCK) as a PIL image with its own pixels."""
    bitmap = render(page, dpi, grayscale)
    try:
        return bitmap.to_pil().copy()  # its own pixels: the bitmap's go with it
    finally:
        bitmap.close()


@contextmanager
def _opened_page(path: Path, password: str | None, page_number: int, name: str) -> Iterator:
    """Page `page_number` of the PDF at `path`, holding pdfium.LOCK; whatever PDFium raises on it
    becomes a DocumentError."""
    with pdfium.LOCK:
        pdf = open_pdf(path, password)
        try:
            if not 1 <= page_number <= len(pdf):  # PDFium would take page 0 as the last one
                raise DocumentError(f"{name}: there is no page {page_number} (it has {len(pdf)})")
            page = pdf[page_number - 1]
            try:
                yield page
            finally:
                page.close()
        except DocumentError:
            raise
        except Exception as exc:  # PdfiumError: the page cannot be read or drawn
            raise DocumentError(f"{name}: could not open page {page_number} again ({exc})") from exc
        finally:
            pdf.close()


def render(page, dpi: float, grayscale: bool = False):
    """A PDFium page as a bitmap, at `dpi` or at the size that keeps it to MAX_RENDER_PIXELS and
    each side to MAX_RENDER_SIDE (in whole pixels: a page 10^8 points wide and 0.001 high is still
    one pixel high)."""
    width, height = page.get_size()
    scale = dpi / 72
    sides = (max(1.0, width * scale), max(1.0, height * scale))
    shrink = min(1.0, (MAX_RENDER_PIXELS / (sides[0] * sides[1])) ** 0.5, *(MAX_RENDER_SIDE / side for side in sides))
    return page.render(scale=scale * shrink, grayscale=grayscale)


def text_layer_words(path: Path, page_number: int, password: str | None = None) -> PageWords:
    """The words of a page's text layer, in reading order, with their boxes, from the PDF file."""
    with _opened_page(path, password, page_number, path.name) as page:
        textpage = page.get_textpage()
        try:
            return _words(page, textpage)
        finally:
            textpage.close()


def open_pdf(path: Path, password: str | None = None):
    """The PDF file again (hold pdfium.LOCK)."""
    import pypdfium2

    try:
        return pdfium.open_document(path, password)
    except (OSError, pypdfium2.PdfiumError) as exc:
        raise DocumentError(f"{path.name}: could not open this PDF again to show a page ({exc})") from exc


def _words(page, textpage) -> PageWords:
    """Walk the page's characters: whitespace ends a word; a word's box is its characters' union.
    Two-column pages keep the reading order of tasks.columns."""
    from tasks.pdf_reader import text_runs

    words: list[tuple[str, Box, Box]] = []  # text, box in points, box as shares of the shown page
    letters: list[str] = []
    box: list[float] | None = None
    for index in range(textpage.count_chars()):
        char = chr(unicode_at(textpage, index))
        if char.isspace() or char == "\x00":
            if letters and box:
                words.append(("".join(letters), tuple(box), _shown(page, box)))
            letters, box = [], None
            continue
        letters.append("-" if char == "\x02" else char)
        if (drawn := char_box(textpage, index)) is None:  # a character PDFium made up has no box
            continue
        left, bottom, right, top = drawn
        box = [left, bottom, right, top] if box is None else [min(box[0], left), min(box[1], bottom),
                                                              max(box[2], right), max(box[3], top)]  # fmt: skip
    if letters and box:
        words.append(("".join(letters), tuple(box), _shown(page, box)))
    regions = reading_regions(text_runs(textpage), page.get_width())
    if regions is not None:
        words.sort(key=lambda word: region_of(word[1], regions))  # stable: in a region, the PDF's order
    return PageWords(tuple(word for word, _, _ in words), tuple(shown for _, _, shown in words))


def _shown(page, box: list[float]) -> Box:
    """A box in PDF points (y up) as shares of the page as shown (rotated as PDFium renders it)."""
    import pypdfium2.raw as pdfium_c

    width, height = page.get_size()
    grid_x, grid_y = _GRID, max(1, round(_GRID * height / width)) if width else _GRID
    corners = []
    for x, y in ((box[0], box[1]), (box[2], box[3])):
        device_x, device_y = ctypes.c_int(), ctypes.c_int()
        pdfium_c.FPDF_PageToDevice(page, 0, 0, grid_x, grid_y, 0, x, y, device_x, device_y)
        corners.append((device_x.value / grid_x, device_y.value / grid_y))
    (x0, y0), (x1, y1) = corners
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def find_span(words: tuple[str, ...], span: str) -> tuple[int, int] | None:
    """The first and last index of the words that hold `span`, compared by letters and digits
    alone, without case and with compatibility forms (ﬁ = fi); None when the words do not hold it."""
    needle = _key(span)
    if not needle:
        return None
    haystack, owners = [], []
    for number, word in enumerate(words):
        key = _key(word)
        haystack.append(key)
        owners += [number] * len(key)
    at = "".join(haystack).find(needle)
    if at < 0:
        return None
    return owners[at], owners[at + len(needle) - 1]


def _key(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(char for char in text if char.isalnum())


def line_rects(boxes: tuple[Box, ...]) -> list[Box]:
    """One rectangle per line: neighbouring boxes whose heights overlap join."""
    rects: list[list[float]] = []
    for x0, y0, x1, y1 in boxes:
        last = rects[-1] if rects else None
        if last is not None and _overlap(last[1], last[3], y0, y1) >= _SAME_LINE * min(last[3] - last[1], y1 - y0):
            last[:] = [min(last[0], x0), min(last[1], y0), max(last[2], x1), max(last[3], y1)]
        else:
            rects.append([x0, y0, x1, y1])
    return [(round(a, 5), round(b, 5), round(c, 5), round(d, 5)) for a, b, c, d in rects]


def _overlap(low_a: float, high_a: float, low_b: float, high_b: float) -> float:
    return max(0.0, min(high_a, high_b) - max(low_a, low_b))


def _page(document: Document, page_number: int):
    if document.meta.get("format") != "pdf":
        raise DocumentError(f"{document.name}: only PDF pages can be shown with highlights")
    if not 1 <= page_number <= len(document.pages):
        raise DocumentError(f"{document.name}: there is no page {page_number} (it has {len(document.pages)})")
    return document.pages[page_number - 1]


def _source(document: Document) -> Path:
    if document.path is None:
        raise DocumentError(f"{document.name}: the PDF file is no longer at hand to show its pages")
    return document.path

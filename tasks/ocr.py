"""Scanned PDF pages -> text and word boxes, with Tesseract (tasks.tesseract runs the program).

The language: the document's own text layer where other pages have one; else the first scanned
page read in English, whose words tell the language (tasks.language), and where English reads it
poorly, Tesseract's script detection (Han, Japanese, Hangul, Arabic). Then every scanned page, in
that language, OCR_WORKERS at a time (one Tesseract thread each), while PDFium renders the next.

Results are cached per session (the cache salt) and file content, so the card, then every task on
the same upload, read a scan once: the cache never answers one session with another's pages.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tasks import pdfium, tesseract
from tasks.errors import DocumentError
from tasks.language import detect_language
from tasks.positions import Box, PageWords, image_of

OCR_DPI = 300  # Tesseract reads text of 10-12 points best at 300 dpi
MAX_OCR_PAGES = 300  # some 10 minutes on two cores; more scanned pages than this are refused
MAX_OCR_SECONDS = 1200.0
PAGE_TIMEOUT_SECONDS = 90
OCR_WORKERS = max(1, min(4, os.cpu_count() or 1))  # Tesseract processes at once, one thread each
MAX_IMAGE_PIXELS = 200_000_000  # an image on a page that would unpack to more is not rendered
CACHE_CHARACTERS = 64 * 2**20  # of OCR text (a word's box counts as 32): some 200 MB at most
TESSERACT_LANGUAGES = {"en": "eng", "de": "deu", "es": "spa", "fr": "fra", "ja": "jpn", "pt": "por", "ar": "ara",
                       "cs": "ces", "it": "ita", "ko": "kor", "nl": "nld", "zh": "chi_sim"}  # fmt: skip
SCRIPT_LANGUAGES = {"Han": "chi_sim", "Japanese": "jpn", "Hangul": "kor", "Korean": "kor", "Arabic": "ara"}
INSTALL_HINT = (
    "install Tesseract OCR: Debian's packages tesseract-ocr and tesseract-ocr-eng, plus one per language you "
    "read (tesseract-ocr-deu, -spa, -fra, -jpn, -por, -ara, -ces, -ita, -kor, -nld, -chi-sim); on Hugging Face "
    "Spaces they are listed in packages.txt"
)
_MIN_TEXT_FOR_LANGUAGE = 200  # letters in the text layer that are enough to tell the language
_LATIN_CONFIDENCE = 60  # Tesseract's mean word confidence below which English may be the wrong script
_CJK = ("\u3040", "\u9fff"), ("\uac00", "\ud7af"), ("\uf900", "\ufaff"), ("\uff00", "\uffef")


@dataclass(frozen=True)
class OcrPage:
    text: str
    words: PageWords
    confidence: float  # Tesseract's mean word confidence, 0-100


class OcrCache:
    """The pages read by OCR, by (session, file content, page), the least recently used dropped
    beyond CACHE_CHARACTERS of text and boxes. Safe to share between threads."""

    def __init__(self, capacity: int = CACHE_CHARACTERS):
        self.capacity = capacity
        self._pages: OrderedDict[tuple, OcrPage | str] = OrderedDict()  # a page, or a document's languages
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> OcrPage | str | None:
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def put(self, key: tuple, page: OcrPage | str) -> None:
        with self._lock:
            if key in self._pages:
                self._size -= _cost(self._pages.pop(key))
            self._pages[key] = page
            self._size += _cost(page)
            while self._size > self.capacity and self._pages:
                self._size -= _cost(self._pages.popitem(last=False)[1])


def _cost(entry: OcrPage | str) -> int:
    if isinstance(entry, str):
        return len(entry)
    return len(entry.text) + sum(len(word) + 32 for word in entry.words.words)


@dataclass(frozen=True)
class OcrRequest:
    """How a read may use OCR: where to say how far it got, the cache and this session's salt, and
    the Tesseract languages (None: chosen from the document)."""

    progress: Callable[[str], None] | None = None
    cache: OcrCache | None = field(default=None, repr=False)
    cache_salt: str | None = field(default=None, repr=False)
    languages: str | None = None
    cancel: threading.Event | None = field(default=None, repr=False)  # set: stop reading (the task was stopped)


def read_scanned_pages(
    pdf, path: Path, name: str, texts: list[str], scanned: list[int], meta: dict, request: OcrRequest | None
) -> None:
    """Read the pages at indexes `scanned` by OCR into `texts`; `meta` gets their page numbers
    ("ocr_pages"), words ("ocr_words": index -> PageWords) and languages. Without Tesseract (or with
    `request` None) they stay empty and `meta["ocr_missing"]` says why; a PDF of scans alone is
    then refused with what to install."""
    meta["ocr_pages"], meta["ocr_words"], meta["scanned_pages"] = [], {}, [index + 1 for index in scanned]
    if request is None:
        return
    scans = set(scanned)
    has_text = any(text.strip() for index, text in enumerate(texts) if index not in scans)
    problem = tesseract_problem()
    if problem is not None:
        if not has_text:
            raise DocumentError(f"{name}: this PDF has no text layer (scanned images), and OCR cannot run: {problem}")
        meta["ocr_missing"] = f"{_pages_label(scanned)} scanned images, not read: {problem}"
        return
    if len(scanned) > MAX_OCR_PAGES:
        too_many = f"OCR reads at most {MAX_OCR_PAGES:,} pages per document (about 4 minutes here)"
        if not has_text:
            raise DocumentError(
                f"{name}: refused: {len(scanned):,} pages of this PDF are scanned images; {too_many}; split it"
            )
        meta["ocr_missing"] = f"{_pages_label(scanned)} scanned images, not read: {too_many}"
        return
    _Reader(pdf, path, name, texts, scanned, meta, request).run()


class _Reader:
    """One document's OCR: the languages chosen once, then page after page, with progress."""

    def __init__(self, pdf, path: Path, name: str, texts: list[str], scanned: list[int], meta: dict,
                 request: OcrRequest):  # fmt: skip
        self.pdf, self.name, self.texts, self.scanned = pdf, name, texts, scanned
        self.meta, self.request = meta, request
        self.digest = _digest(path) if request.cache is not None else None
        self.first_reading: tuple[str, OcrPage] | None = None  # the first page, read to choose the language

    def run(self) -> None:
        self._check_stopped()
        started = time.monotonic()
        languages = self.request.languages or self._cached_languages()
        self.meta["ocr_languages"] = languages
        pool = ThreadPoolExecutor(OCR_WORKERS, thread_name_prefix="ocr")
        try:
            pending: deque[tuple[int, Future[OcrPage] | OcrPage]] = deque()
            for index in self.scanned:
                pending.append((index, self._start(pool, index, languages)))  # renders here, reads in the pool
                if len(pending) > OCR_WORKERS:
                    self._finish(*pending.popleft(), languages, started)
            while pending:
                self._finish(*pending.popleft(), languages, started)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # a refusal: the pages not started are dropped

    def _start(self, pool: ThreadPoolExecutor, index: int, languages: str) -> Future[OcrPage] | OcrPage:
        self._check_stopped()
        cached = self._cached(index, languages)
        if cached is not None:
            return cached
        image = page_image(self.pdf, index, self.name)  # PDFium: in this thread only
        return pool.submit(read_page, image, languages, self.name, index + 1)

    def _finish(self, index: int, result: Future[OcrPage] | OcrPage, languages: str, started: float) -> None:
        page = result.result() if isinstance(result, Future) else result
        if self.request.cache is not None:
            self.request.cache.put((self.request.cache_salt, self.digest, index, languages), page)
        self.texts[index] = page.text
        self.meta["ocr_words"][index] = page.words
        self.meta["ocr_pages"].append(index + 1)
        done = len(self.meta["ocr_pages"])
        if self.request.progress is not None:
            where = "" if len(self.scanned) == len(self.texts) else f" (page {index + 1})"
            self.request.progress(f"{self.name}: OCR page {done} of {len(self.scanned)}{where}")
        if time.monotonic() - started > MAX_OCR_SECONDS and done < len(self.scanned):
            raise DocumentError(
                f"{self.name}: refused: OCR of this PDF took more than {MAX_OCR_SECONDS / 60:.0f} minutes for "
                f"{done:,} of its {len(self.scanned):,} scanned pages; split it into parts"
            )

    def _check_stopped(self) -> None:
        if self.request.cancel is not None and self.request.cancel.is_set():
            raise DocumentError(f"{self.name}: reading stopped")

    def _cached_languages(self) -> str:
        key = (self.request.cache_salt, self.digest, "languages")
        cache = self.request.cache
        languages = cache.get(key) if cache is not None else None
        if not isinstance(languages, str):
            languages = self._choose_languages()
            if cache is not None:
                cache.put(key, languages)
        return languages

    def _cached(self, index: int, languages: str) -> OcrPage | None:
        cache = self.request.cache
        page = cache.get((self.request.cache_salt, self.digest, index, languages)) if cache is not None else None
        if page is None and self.first_reading and self.first_reading[0] == languages and index == self.scanned[0]:
            page = self.first_reading[1]
        return page if isinstance(page, OcrPage) else None

    def _choose_languages(self) -> str:
        """Tesseract's language code for this document (one of the twelve, installed)."""
        installed = installed_languages()
        scans = set(self.scanned)
        other_pages = "\n".join(text for number, text in enumerate(self.texts) if number not in scans)
        language = None
        if sum(char.isalpha() for char in other_pages) >= _MIN_TEXT_FOR_LANGUAGE:
            language = TESSERACT_LANGUAGES.get(detect_language(other_pages) or "")
        else:  # English first (Latin script is the most common), the script's language where that fails
            image = page_image(self.pdf, self.scanned[0], self.name)
            first = read_page(image, "eng", self.name, self.scanned[0] + 1)  # eng: in every install
            self.first_reading = ("eng", first)
            language = TESSERACT_LANGUAGES.get(detect_language(first.text) or "")
            if language is None or self.first_reading[1].confidence < _LATIN_CONFIDENCE:
                language = SCRIPT_LANGUAGES.get(_script(image) or "") or language
        if language is not None and language not in installed:
            package = "tesseract-ocr-" + language.replace("_", "-")
            self.meta["ocr_note"] = f"Tesseract has no {language} language data here ({package}); read as English"
            language = None
        return language or "eng"


def tesseract_problem() -> str | None:
    """Why OCR cannot run here (with what to install), or None when it can."""
    try:
        tesseract.version()
    except tesseract.TesseractMissing:
        return f"Tesseract OCR is not installed: {INSTALL_HINT}"
    except tesseract.TesseractFailed as exc:  # the program is there but broken
        return f"Tesseract OCR does not run ({exc}): {INSTALL_HINT}"
    return None


def installed_languages() -> frozenset[str]:
    try:
        return tesseract.languages()
    except (tesseract.TesseractMissing, tesseract.TesseractFailed):  # it ran a moment ago: English at least
        return frozenset({"eng"})


def page_image(pdf, index: int, name: str):
    """Page `index` rendered in grey at OCR_DPI; refused when it draws an image that would unpack
    to more than MAX_IMAGE_PIXELS (PDFium would try to hold it all)."""
    import pypdfium2.raw as pdfium_c

    with pdfium.LOCK:
        page = pdf[index]
        try:
            for image in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=4):
                width, height = image.get_px_size()
                if width * height > MAX_IMAGE_PIXELS:
                    raise DocumentError(
                        f"{name}: refused: page {index + 1} holds an image of {width:,} x {height:,} pixels, too "
                        "large to read by OCR"
                    )
            return image_of(page, OCR_DPI, grayscale=True)
        finally:
            page.close()


def read_page(image, languages: str, name: str, number: int) -> OcrPage:
    """One page image read by Tesseract: its text (lines, and paragraphs apart) and word boxes."""
    try:
        words = tesseract.read_words(_png(image), languages, OCR_DPI, PAGE_TIMEOUT_SECONDS)
    except tesseract.TesseractMissing as exc:  # uninstalled while the server runs
        raise DocumentError(f"{name}: OCR of page {number} failed: {exc}; {INSTALL_HINT}") from exc
    except tesseract.TesseractFailed as exc:
        raise DocumentError(f"{name}: OCR of page {number} failed ({exc})") from exc
    return assemble(words, image.width, image.height)


def assemble(words: list[tesseract.Word], width: int, height: int) -> OcrPage:
    """The text of Tesseract's words: a line per line, a blank line between paragraphs."""
    lines: list[list[str]] = []
    boxes: list[Box] = []
    previous: tuple[int, int, int] | None = None
    for word in words:
        if word.line != previous:
            if previous is not None and word.line[:2] != previous[:2]:
                lines.append([])
            lines.append([])
            previous = word.line
        lines[-1].append(word.text)
        boxes.append((word.left / width, word.top / height, (word.left + word.width) / width,
                      (word.top + word.height) / height))  # fmt: skip
    confidence = sum(word.confidence for word in words) / len(words) if words else 0.0
    text = "\n".join(_join_words(line) for line in lines)
    return OcrPage(text, PageWords(tuple(word.text for word in words), tuple(boxes)), confidence)


def _join_words(words: list[str]) -> str:
    """Words with spaces between them, except between two Chinese, Japanese or Korean characters
    (Tesseract cuts such text into one-character words)."""
    out = ""
    for word in words:
        if out and not (_is_cjk(out[-1]) and _is_cjk(word[0])):
            out += " "
        out += word
    return out


def _is_cjk(char: str) -> bool:
    return any(low <= char <= high for low, high in _CJK)


def _script(image) -> str | None:
    """The script Tesseract's OSD sees on the page (Latin, Han, Arabic, ...), or None."""
    return tesseract.script(_png(image), OCR_DPI, PAGE_TIMEOUT_SECONDS)


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast: the bytes only cross a pipe
    return buffer.getvalue()


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _pages_label(indexes: list[int]) -> str:
    numbers = [index + 1 for index in indexes]
    shown = ", ".join(str(number) for number in numbers[:10]) + (", ..." if len(numbers) > 10 else "")
    return f"page {shown} is" if len(numbers) == 1 else f"pages {shown} are"

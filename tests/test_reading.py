"""Reading PDFs right: PDFium text on generated PDFs with known text (two columns, ligatures,
hyphenation, seven languages), OCR of generated scans in English and German (marked as OCR, with
progress, cached per session), highlight rectangles that cover a quoted span on the rendered page,
and a clear install message where Tesseract is missing.

The OCR tests need Debian's Tesseract (`.ci/run` installs packages.txt); without it they are
skipped, unless GRANITE_LONGDOC_REQUIRE_OCR=1 makes that a failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from benchmarks.pdf_corpus import CorpusPdf, char_accuracy, word_scores, write_corpus
from tasks import tesseract
from tasks.columns import reading_regions
from tasks.documents import Document, load_document
from tasks.errors import DocumentError
from tasks.ocr import OcrCache, OcrRequest
from tasks.pdf_reader import needs_ocr
from tasks.positions import find_span, highlight, render_page
from tasks.workbench import Workbench
from tests.fakes import FakeEngine
from tests.pdfs import PdfFactory
from tests.raw_files import FONT, PAGE, raw_pdf, stream, write


def _require_tesseract() -> None:
    if shutil.which("tesseract"):
        return
    if os.environ.get("GRANITE_LONGDOC_REQUIRE_OCR") == "1":
        pytest.fail("Tesseract is required here (GRANITE_LONGDOC_REQUIRE_OCR=1) but not installed")
    pytest.skip("Tesseract is not installed (apt-get install $(cat packages.txt))")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, CorpusPdf]:
    return {pdf.name: pdf for pdf in write_corpus(tmp_path_factory.mktemp("corpus"))}


@pytest.fixture(scope="module")
def scans(corpus) -> dict[str, Document]:
    _require_tesseract()
    return {name: load_document(pdf.path) for name, pdf in corpus.items() if pdf.scanned}


def _text_pdfs() -> list[str]:
    return ["plain.pdf", "two-columns.pdf", "ligatures.pdf", "hyphenation.pdf",
            *(f"languages-{code}.pdf" for code in ("de", "es", "fr", "cs", "pt", "it", "nl"))]  # fmt: skip


@pytest.mark.parametrize("name", _text_pdfs())
def test_pdfium_text_matches_the_known_text(corpus, name):
    pdf = corpus[name]
    document = load_document(pdf.path)
    assert len(document.pages) == len(pdf.pages) and not document.ocr_pages
    recall, precision = word_scores(document.text, "\n".join(pdf.pages))
    assert recall >= 0.98 and precision >= 0.98, (recall, precision)
    # In order, too: two columns read left then right, hyphenated words whole, ligatures spelled out.
    for page, known in zip(document.pages, pdf.pages, strict=True):
        assert char_accuracy(page.text, known) >= 0.98, (page.number, page.text[:300])


def test_a_two_column_page_reads_column_by_column_where_pdfium_alone_reads_across(corpus):
    import pypdfium2 as pdfium

    pdf = corpus["two-columns.pdf"]
    textpage = pdfium.PdfDocument(pdf.path)[0].get_textpage()
    drawn_order = textpage.get_text_bounded().replace("\r\n", "\n")  # the order the page was drawn in: across
    ours = load_document(pdf.path).pages[0].text
    assert char_accuracy(drawn_order, pdf.pages[0]) < 0.5 < 0.98 <= char_accuracy(ours, pdf.pages[0])
    left_column = pdf.pages[0].splitlines()[1:3]  # the left column's first two lines follow each other
    assert ours.splitlines()[1:3] == left_column != drawn_order.splitlines()[1:3]


def test_columns_are_found_only_for_prose_on_both_sides():
    width = 600.0
    prose = [(50, 700 - 14 * n, 290, 710 - 14 * n) for n in range(20)] + [(310, 700 - 14 * n, 550, 710 - 14 * n)
                                                                          for n in range(20)]  # fmt: skip
    title = [(50, 740, 550, 755)]
    regions = reading_regions(prose + title, width)
    assert regions is not None and len(regions) == 3  # the title across, then left, then right
    assert regions[0][1] > 700 and regions[1][2] == regions[2][0]  # one gutter between the columns
    form = [(50, 700 - 14 * n, 120, 710 - 14 * n) for n in range(20)] + [(310, 700 - 14 * n, 380, 710 - 14 * n)
                                                                         for n in range(20)]  # fmt: skip
    assert reading_regions(form, width) is None  # labels and values: rows stay together
    one_column = [(50, 700 - 14 * n, 550, 710 - 14 * n) for n in range(40)]
    assert reading_regions(one_column, width) is None


@pytest.mark.parametrize(
    ("text", "scanned"),
    [("", True), ("  \n ", True), ("\ufffd\ufffd\ufffd\ufffd" * 10, True), ("\ue001\ue002 " * 20, True),
     ("#$%&*@!" * 10, True), ("Revenue grew 12 % in 2024.", False), ("x = 3.14 (a + b) / 2 = 1", False),
     ("表 1 売上高の推移 2024年", False), ("1 Einleitung " + ". " * 60 + "3", False)],
)  # fmt: skip
def test_pages_without_a_real_text_layer_are_read_by_ocr(text, scanned):
    assert needs_ocr(text) is scanned


@pytest.mark.parametrize(("name", "language"), [("scan-en.pdf", "eng"), ("scan-de.pdf", "deu")])
def test_scanned_pdfs_are_read_by_ocr_and_marked(corpus, scans, name, language):
    document = scans[name]
    assert document.ocr_pages == [page.number for page in document.pages] == [1, 2]
    assert document.meta["ocr_languages"] == language
    for page, known in zip(document.pages, corpus[name].pages, strict=True):
        assert page.ocr and page.words is not None and len(page.words.words) > 100
        assert char_accuracy(page.text, known) >= 0.95, page.text[:300]
    card = Workbench(FakeEngine()).card([document])
    assert card.ocr_pages == 2 and f"pages 1-2 read by OCR (Tesseract, {language})" in card.note


@pytest.mark.parametrize("name", ["plain.pdf", "two-columns.pdf", "hyphenation.pdf", "scan-en.pdf", "scan-de.pdf"])
def test_highlight_rectangles_cover_the_quoted_words_on_the_rendered_page(corpus, name):
    if corpus[name].scanned:
        _require_tesseract()
    document = load_document(corpus[name].path)
    page = document.pages[0]
    words = page.text.split()
    span = " ".join(words[45:70])  # some 25 words over several lines (the cleaned text, as a quote would be)
    found = highlight(document, 1, span)
    assert found is not None and found.ocr == page.ocr and 2 <= len(found.rects) <= 6
    covered, quoted = _letters("".join(found.words)), _letters(span)
    assert quoted in covered and len(covered) - len(quoted) < 25  # the span's words, and hardly more
    for x0, y0, x1, y1 in found.rects:
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    image = render_page(document, 1, dpi=100).convert("L")
    for x0, y0, x1, y1 in found.rects:  # each rectangle holds ink on the rendered page: they line up
        box = (int(x0 * image.width), int(y0 * image.height), int(x1 * image.width) + 1, int(y1 * image.height) + 1)
        assert image.crop(box).getextrema()[0] < 100, box
    assert highlight(document, 1, "words that are not on this page at all") is None


def test_an_accent_drawn_apart_from_its_letter_is_put_back_on_it(tmp_path):
    """Old TeX fonts draw `ü` as `u` plus a `¨` glyph over it; PDFium sorts the accent out of the
    word (`unterstutzt. ¨`)."""
    helvetica = {"D": 722, "i": 222, "e": 556, " ": 278, "S": 667, "p": 556, "r": 333, "a": 556, "c": 500,
                 "h": 556, "w": 722, "d": 556, "u": 556, "n": 556, "t": 278, "s": 500}  # fmt: skip
    u_at = 72 + sum(helvetica[char] for char in "Die Sprache wird unterst") * 12 / 1000
    accent_at = u_at + (556 - 333) / 2 * 12 / 1000  # the dieresis (333 wide) centred over the u (556)
    content = (b"BT /F1 12 Tf 72 700 Td (Die Sprache wird unterst) Tj ET BT /F1 12 Tf %.2f 701 Td (\\310) Tj ET "
               b"BT /F1 12 Tf %.2f 700 Td (utzt.) Tj ET BT /F1 12 Tf 72 684 Td (Zeile darunter.) Tj ET")  # fmt: skip
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE, FONT,
               stream(content % (accent_at, u_at))]  # fmt: skip
    path = write(tmp_path / "accents.pdf", raw_pdf(objects))
    assert load_document(path).text == "Die Sprache wird unterstützt.\nZeile darunter."


def test_a_footnote_mark_is_kept_apart_from_its_word_and_a_subscript_is_not(tmp_path):
    knuth_end = 72 + (722 + 722 + 722 + 722 + 611) * 12 / 1000  # KNUTH in Helvetica at 12 pt
    co_end = 72 + (722 + 778) * 12 / 1000
    content = b"BT /F1 12 Tf 72 700 Td (KNUTH) Tj ET BT /F1 8 Tf %.2f 705 Td (2) Tj ET " % knuth_end  # raised
    content += b"BT /F1 12 Tf 72 680 Td (CO) Tj ET BT /F1 8 Tf %.2f 678 Td (2) Tj ET" % co_end  # lowered
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE, FONT,
               stream(content)]  # fmt: skip
    path = write(tmp_path / "marks.pdf", raw_pdf(objects))
    assert load_document(path).text == "KNUTH 2\nCO2"


def test_a_span_is_found_by_its_letters_across_hyphens_ligatures_and_case():
    words = ("The", "ﬁnal", "recog-", "nized", "well-", "known", "RESULT.")
    assert find_span(words, "final recognized well-known result") == (1, 6)
    assert find_span(words, "recognized") == (2, 3)
    assert find_span(words, "absent words") is None and find_span(words, " ... ") is None


def test_a_scan_is_read_once_per_session_and_never_from_another_sessions_cache(corpus, monkeypatch):
    _require_tesseract()
    calls = []
    read_words = tesseract.read_words
    monkeypatch.setattr(tesseract, "read_words", lambda *args: calls.append(1) or read_words(*args))
    cache = OcrCache()
    path = corpus["scan-en.pdf"].path
    first = load_document(path, ocr=OcrRequest(cache=cache, cache_salt="session-a"))
    assert len(calls) == 2  # the first page read in English serves as page 1: no second reading
    again = load_document(path, ocr=OcrRequest(cache=cache, cache_salt="session-a"))
    assert len(calls) == 2 and again.text == first.text
    load_document(path, ocr=OcrRequest(cache=cache, cache_salt="session-b"))
    assert len(calls) == 4  # another session reads it itself


def test_a_task_on_a_scan_shows_ocr_progress(corpus):
    _require_tesseract()
    workbench = Workbench(FakeEngine())
    events = list(workbench.summarize(corpus["scan-de.pdf"].path, workbench.options(cache_salt="s")))
    steps = [event.message for event in events if type(event).__name__ == "Progress"]
    assert "scan-de.pdf: OCR page 1 of 2" in steps and "scan-de.pdf: OCR page 2 of 2" in steps
    assert steps.index("scan-de.pdf: OCR page 2 of 2") < steps.index("scan-de.pdf: OCR page 1 of 2") + 2


def test_without_tesseract_a_scan_gets_the_install_message_and_text_pages_still_read(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no tesseract program on the PATH
    with pytest.raises(DocumentError) as refused:
        load_document(corpus["scan-en.pdf"].path)
    message = str(refused.value)
    assert message.startswith("scan-en.pdf: this PDF has no text layer (scanned images), and OCR cannot run: "
                              "Tesseract OCR is not installed: install Tesseract OCR: Debian's packages "
                              "tesseract-ocr and tesseract-ocr-eng")  # fmt: skip
    assert "packages.txt" in message
    mixed = _text_then_scan(tmp_path, corpus["scan-en.pdf"].path)
    document = load_document(mixed)
    assert "Typed cover page" in document.pages[0].text and not document.pages[1].text and not document.ocr_pages
    note = Workbench(FakeEngine()).card([document]).note
    assert "mixed.pdf: page 2 is scanned images, not read: Tesseract OCR is not installed" in note


def test_a_text_page_sets_the_language_for_the_scanned_pages(corpus, tmp_path):
    _require_tesseract()
    mixed = _text_then_scan(tmp_path, corpus["scan-de.pdf"].path, cover="Dieser Bericht beschreibt das Jahr " * 20)
    document = load_document(mixed)
    assert document.meta["ocr_languages"] == "deu" and document.ocr_pages == [2]
    assert not document.pages[0].ocr and document.pages[0].words is None  # text pages keep no boxes


def _letters(text: str) -> str:
    return "".join(char for char in text.casefold() if char.isalnum())


def _text_then_scan(folder: Path, scan: Path, cover: str = "Typed cover page.") -> Path:
    """A PDF whose first page has a text layer and whose second is the first page of `scan`."""
    import pypdfium2 as pdfium

    text = PdfFactory(folder).make("cover.pdf", [cover])
    merged = pdfium.PdfDocument(text)
    merged.import_pages(pdfium.PdfDocument(scan), [0])
    path = folder / "mixed.pdf"
    merged.save(path)
    return path


def test_packages_txt_installs_tesseract_for_all_twelve_languages():
    """Hugging Face Spaces installs packages.txt with apt; .ci/run installs it too."""
    from tasks.language import LANGUAGES
    from tasks.ocr import TESSERACT_LANGUAGES
    from tests.conftest import REPO_ROOT

    packages = set((REPO_ROOT / "packages.txt").read_text().split())
    assert set(TESSERACT_LANGUAGES) == set(LANGUAGES)
    per_language = {"tesseract-ocr-" + code.replace("_", "-") for code in TESSERACT_LANGUAGES.values()}
    assert packages == {"tesseract-ocr"} | per_language


def test_a_stopped_task_stops_reading_its_scans(corpus):
    import threading

    _require_tesseract()
    stop = threading.Event()
    stop.set()  # the Stop button, pressed while the scan is read
    with pytest.raises(DocumentError, match=r"^scan-en\.pdf: reading stopped$"):
        load_document(corpus["scan-en.pdf"].path, ocr=OcrRequest(cancel=stop))

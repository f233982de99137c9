"""Reading real files: PDFs generated here, text in several encodings, and clear refusals.
Hostile files (damaged, encrypted, bombs, odd names, legacy encodings) are in test_hostile_inputs.py."""

import pytest

from tasks.documents import load_document
from tasks.errors import DocumentError
from tests.pdfs import REPORT_PAGES


def test_multipage_pdf_has_one_page_each_numbered_from_one(pdfs):
    document = load_document(pdfs.report())
    assert document.name == "report.pdf"
    assert [page.number for page in document.pages] == [1, 2, 3]
    assert "4.2 million euros" in document.pages[0].text
    assert "45 employees" in document.pages[1].text
    assert document.meta["format"] == "pdf"


def test_non_latin_text_survives_pdf_extraction(pdfs):
    document = load_document(pdfs.report())
    assert "Отчёт описывает доходы компании" in document.pages[1].text
    assert "Η έκθεση περιγράφει τα έσοδα" in document.pages[1].text
    assert "Zpráva popisuje příjmy společnosti." in document.pages[2].text


def test_pdf_with_empty_password_opens(pdfs):
    document = load_document(pdfs.make("open.pdf", REPORT_PAGES, user_password=""))
    assert "4.2 million euros" in document.pages[0].text


def test_a_pdf_of_blank_pages_is_empty_without_running_ocr(pdfs):
    with pytest.raises(DocumentError, match=r"^blank\.pdf: the file is empty: this PDF's pages have no text and draw"):
        load_document(pdfs.make("blank.pdf", ["", ""]))


def test_a_scanned_pdf_read_with_ocr_off_says_so(tmp_path):
    from tests.hostile_pdf import pdf_scanned_image_only

    path = pdf_scanned_image_only(tmp_path).paths[0]
    with pytest.raises(DocumentError, match=r"^scan\.pdf: this PDF has no text layer .*and OCR was not asked for$"):
        load_document(path, ocr=None)


def test_utf8_text_and_markdown(tmp_path):
    (tmp_path / "notes.md").write_text("# Notes\n\nCafé crème, 日本語, Ελληνικά.\n", encoding="utf-8")
    document = load_document(tmp_path / "notes.md")
    assert document.pages[0].text == "# Notes\n\nCafé crème, 日本語, Ελληνικά."
    assert document.meta["format"] == "markdown" and document.meta["encoding"] == "utf-8"


def test_form_feeds_are_page_breaks(tmp_path):
    (tmp_path / "paged.txt").write_text("first page\fsecond page\fthird page", encoding="utf-8")
    document = load_document(tmp_path / "paged.txt")
    assert [(p.number, p.text) for p in document.pages] == [(1, "first page"), (2, "second page"), (3, "third page")]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("junk.txt", b"\x00\x01\x02binary\x00" * 50, "binary file"),
        ("table.xlsx", b"PK\x03\x04", "unsupported file type .xlsx"),
        ("noext", b"hello", r"unsupported file type \(none\)"),
    ],
)
def test_unreadable_files_get_a_clear_message(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DocumentError, match=message):
        load_document(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(DocumentError, match="file not found"):
        load_document(tmp_path / "gone.pdf")


def test_damaged_utf16_text_is_a_clear_error(tmp_path):
    (tmp_path / "odd.txt").write_bytes(b"\xff\xfeH\x00i\x00!")
    with pytest.raises(DocumentError, match="UTF-16 text file is damaged"):
        load_document(tmp_path / "odd.txt")


def test_html_headings_make_sections_so_citations_point_somewhere(tmp_path):
    (tmp_path / "guide.html").write_text(
        "<h1>Guide</h1><p>Welcome.</p><script>document.write('<h2>not a heading</h2>')</script>"
        "<h2>Borrowing</h2><p>Members may borrow 12 books.</p><h3>Renewals</h3><p>Online.</p>"
        "<h4>Small print</h4><p>Fines apply.</p>",
        encoding="utf-8",
    )
    document = load_document(tmp_path / "guide.html")
    texts = [" ".join(page.text.split()) for page in document.pages]
    assert texts == [
        "Guide Welcome.",
        "Borrowing Members may borrow 12 books.",
        "Renewals Online. Small print Fines apply.",
    ]


def test_a_page_of_endless_headings_stays_within_the_section_limit(tmp_path):
    from tasks.readers import MAX_HTML_SECTIONS

    (tmp_path / "many.html").write_text("".join(f"<h2>H{i}</h2><p>t{i}</p>" for i in range(3000)), encoding="utf-8")
    document = load_document(tmp_path / "many.html")
    assert len(document.pages) == MAX_HTML_SECTIONS and "t2999" in document.pages[-1].text

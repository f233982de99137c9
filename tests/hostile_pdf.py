"""The PDF cases of the hostile-input corpus (tests/hostile.py registers them): encrypted, damaged,
huge, looping and bomb-like PDFs."""

from __future__ import annotations

import zlib
from pathlib import Path

from tasks.documents import Document
from tests.hostile import SECRET, Case, case, holds, reads, refused, text_is
from tests.pdfs import REPORT_PAGES, PdfFactory
from tests.raw_files import FONT, HELLO, PAGE, pages_sharing_one_stream, png_bytes, raw_pdf, stream, write


@case
def pdf_encrypted_without_password(folder: Path) -> Case:
    path = PdfFactory(folder).make("locked.pdf", REPORT_PAGES, user_password=SECRET)
    return refused(
        path, r"^locked\.pdf: this PDF is encrypted and needs a password to open \(command line: --password\)$"
    )


@case
def pdf_encrypted_right_password(folder: Path) -> Case:
    path = PdfFactory(folder).make("locked.pdf", REPORT_PAGES, user_password=SECRET)
    return reads(path, lambda docs: holds("4.2 million euros" in docs[0].pages[0].text), password=SECRET)


@case
def pdf_encrypted_wrong_password(folder: Path) -> Case:
    path = PdfFactory(folder).make("locked.pdf", REPORT_PAGES, user_password=SECRET)
    return refused(path, r"^locked\.pdf: wrong password for this encrypted PDF$", password="guess")


@case
def pdf_corrupt_after_header(folder: Path) -> Case:
    path = write(folder / "corrupt.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 20)
    return refused(path, r"^corrupt\.pdf: could not read this PDF, it looks damaged or incomplete \(.+\)$")


@case
def pdf_truncated_to_half(folder: Path) -> Case:
    whole = PdfFactory(folder).report("whole.pdf").read_bytes()
    path = write(folder / "half.pdf", whole[: len(whole) // 2])
    return refused(path, r"^half\.pdf: could not read this PDF, it looks damaged or incomplete \(.+\)$")


@case
def pdf_zero_bytes(folder: Path) -> Case:
    return refused(write(folder / "nothing.pdf", b""), r"^nothing\.pdf: the file is empty \(0 bytes\)$")


@case
def pdf_png_image_renamed(folder: Path) -> Case:
    path = write(folder / "photo.pdf", png_bytes())
    return refused(path, r"^photo\.pdf: this is not a PDF file \(it is a PNG image\)$")


@case
def pdf_scanned_image_only(folder: Path) -> Case:
    from fpdf import FPDF
    from PIL import Image

    pdf = FPDF()
    for _ in range(2):
        pdf.add_page()
        pdf.image(Image.new("RGB", (400, 300), "lightgray"), x=10, y=10, w=150)
    pdf.output(str(folder / "scan.pdf"))
    # Read by OCR (grey rectangles: no text in them).
    return refused(folder / "scan.pdf", r"^scan\.pdf: no text found: this PDF has no text layer, and OCR found no text")


@case
def pdf_2000_pages(folder: Path) -> Case:
    path = PdfFactory(folder).make(
        "thick.pdf", [f"Section {n}. The value on this page is {n * 7}." for n in range(1, 2001)]
    )

    def check(documents: list[Document]) -> None:
        assert len(documents[0].pages) == 2000
        assert "value on this page is 14000" in documents[0].pages[1999].text

    return reads(path, check)


@case
def pdf_over_the_page_limit(folder: Path) -> Case:
    path = write(folder / "endless.pdf", pages_sharing_one_stream(5_001))
    return refused(
        path, r"^endless\.pdf: this document has 5,001 pages; the limit is 5,000 pages, split it into parts$"
    )


def _base_objects(kids: bytes = b"[3 0 R] /Count 1", page: bytes | None = None) -> list[bytes]:
    """Objects 1-5 of a one-page PDF: catalog, page tree (with `kids`), page, font, content stream."""
    return [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids " + kids + b" >>", page or PAGE, FONT,
            stream(HELLO)]  # fmt: skip


@case
def pdf_page_tree_loop(folder: Path) -> Case:
    # The page tree's root lists itself as its own kid.
    objects = _base_objects(kids=b"[3 0 R 2 0 R] /Count 2")
    path = write(folder / "loop.pdf", raw_pdf(objects))
    return refused(path, r"^loop\.pdf: could not read this PDF, it looks damaged or incomplete \(.*cyclic.*\)$")


@case
def pdf_deep_page_tree(folder: Path) -> Case:
    levels = 5_000  # a chain of page-tree nodes, each the only kid of the one before
    objects = _base_objects(kids=b"[6 0 R] /Count 1")
    for level in range(levels):
        kid = 7 + level if level < levels - 1 else 3
        objects.append(b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % kid)
    path = write(folder / "deep.pdf", raw_pdf(objects))
    return refused(path, r"^deep\.pdf: refused: this PDF exceeds a safety limit of the PDF reader \(.*depth.*\)$")


@case
def pdf_deeply_nested_arrays(folder: Path) -> Case:
    depth = 100_000
    page = PAGE.replace(b">>", b"/Junk " + b"[" * depth + b"]" * depth + b" >>")
    objects = _base_objects(page=page)
    path = write(folder / "nested.pdf", raw_pdf(objects))
    return refused(path, r"^nested\.pdf: could not read this PDF, it looks damaged or incomplete \(.+\)$")


@case
def pdf_chain_of_20000_references(folder: Path) -> Case:
    links = 20_000  # the page points at an array that points at an array ... 20,000 objects deep
    page = PAGE.replace(b">>", b"/Chain 6 0 R >>")
    objects = _base_objects(page=page)
    objects += [b"[%d 0 R]" % (7 + link) for link in range(links - 1)] + [b"null"]
    return reads(write(folder / "chain.pdf", raw_pdf(objects)), text_is("Hello hostile world"))


@case
def pdf_form_that_draws_itself(folder: Path) -> Case:
    resources = b"<< /XObject << /X1 6 0 R >> /Font << /F1 4 0 R >> >>"
    drawing = b"BT /F1 12 Tf (inside the form) Tj ET /X1 Do"  # ... and then draws itself again
    form = stream(drawing, b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources " + resources + b" ")
    page = PAGE.replace(b"/Font << /F1 4 0 R >>", b"/Font << /F1 4 0 R >> /XObject << /X1 6 0 R >>")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page, FONT,
               stream(HELLO + b" /X1 Do"), form]  # fmt: skip
    return reads(write(folder / "form.pdf", raw_pdf(objects)), _form_drawn_to_pdfiums_depth_limit)


def _form_drawn_to_pdfiums_depth_limit(documents: list[Document]) -> None:
    """PDFium draws the form inside itself until its nesting limit: a bounded number of times."""
    text = documents[0].text
    assert text.startswith("Hello hostile world") and 1 <= text.count("inside the form") <= 64, text[:200]


@case
def pdf_deflate_bomb(folder: Path) -> Case:
    bomb = zlib.compress(b"0" * 100_000_000, 9)  # 100 MB of zeros in a 100 KB content stream
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", PAGE, FONT,
               stream(bomb, b"/Filter /FlateDecode ")]  # fmt: skip
    path = write(folder / "bomb.pdf", raw_pdf(objects))
    return refused(
        path, r"^bomb\.pdf: refused: this PDF exceeds a safety limit of the PDF reader \(.*decompressing.*\)$"
    )


@case
def pdf_scan_of_an_image_too_large_to_render(folder: Path) -> Case:
    # A page with no text that draws one image declared 100,000 x 100,000 pixels (10 GB unpacked)
    # from 1 KB: OCR would have PDFium render it; it is refused before.
    image = stream(zlib.compress(bytes(1000)), b"/Type /XObject /Subtype /Image /Width 100000 /Height 100000 "
                   b"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode ")  # fmt: skip
    page = PAGE.replace(b"/Font << /F1 4 0 R >>", b"/XObject << /Im1 4 0 R >>")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page, image,
               stream(b"q 612 0 0 792 0 0 cm /Im1 Do Q")]  # fmt: skip
    path = write(folder / "huge-image.pdf", raw_pdf(objects))
    return refused(path, r"^huge-image\.pdf: refused: page 1 holds an image of 100,000 x 100,000 pixels, too large")


@case
def pdf_form_drawn_ten_thousand_times(folder: Path) -> Case:
    # 1 KB of file: a page that draws one small form of text 10,000 times would make PDFium hold
    # millions of characters (hundreds of MB) for that one page; refused by the structure check.
    form = stream(b"BT /F1 1 Tf 10 10 Td (" + b"A" * 150 + b") Tj ET", b"/Type /XObject /Subtype /Form "
                  b"/BBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> ")  # fmt: skip
    content = zlib.compress(b"/Fm0 Do " * 10_000)
    page = PAGE.replace(b"/Font << /F1 4 0 R >>", b"/Font << /F1 4 0 R >> /XObject << /Fm0 6 0 R >>")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page, FONT,
               stream(content, b"/Filter /FlateDecode "), form]  # fmt: skip
    path = write(folder / "copies.pdf", raw_pdf(objects))
    return refused(path, r"^copies\.pdf: refused: page 1 draws more than 512 KB of text \(a form drawn again")

"""Files made byte by byte for the tests: raw PDFs (object bodies with a correct xref table), a
Word file with any document XML, a PNG image."""

from __future__ import annotations

import zipfile
from pathlib import Path

W_NAMESPACE = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
HELLO = b"BT /F1 12 Tf 72 700 Td (Hello hostile world) Tj ET"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def stream(data: bytes, filters: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), filters) + data + b"\nendstream"


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF from object bodies numbered from 1 (object 1 the catalog), with a correct xref table:
    the damage is in the structure, not in the bookkeeping."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def pages_sharing_one_stream(count: int, content: bytes = HELLO) -> bytes:
    """`count` pages sharing one content stream: a big page count (or, with a long `content`, a lot
    of text) in a small, fast-to-make file."""
    kids = b" ".join(b"%d 0 R" % (5 + n) for n in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % count,
               FONT, stream(content)]  # fmt: skip
    page = PAGE.replace(b"/F1 4 0 R", b"/F1 3 0 R").replace(b"/Contents 5 0 R", b"/Contents 4 0 R")
    return raw_pdf(objects + [page] * count)


def docx_file(folder: Path) -> Path:
    """A small real Word file, made once per case folder."""
    import docx

    path = folder / "base.docx"
    if not path.exists():
        document = docx.Document()
        document.add_paragraph("Hello from Word.")
        document.save(path)
    return path


def docx_with(folder: Path, name: str, document_xml: bytes) -> Path:
    path = folder / name
    with zipfile.ZipFile(docx_file(folder)) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = document_xml if item.filename == "word/document.xml" else source.read(item.filename)
            target.writestr(item.filename, data)
    return path

"""PDFium (pypdfium2) is not thread-safe: two threads in it at once, even on different documents,
can crash the process. The web server reads documents in several threads (a card and a task, two
users), so every call into PDFium holds LOCK, one page's work at a time: a long OCR does not hold
it while Tesseract reads (tasks.ocr renders a page under it, then lets go)."""

from __future__ import annotations

import threading
from pathlib import Path

LOCK = threading.RLock()


def open_document(path: Path, password: str | None = None):
    """A pypdfium2 PdfDocument (call it holding LOCK; close it holding LOCK), opened with the
    password, else with none: one password is given for all the files of an upload, and a file
    that needs none must still open. Raises pypdfium2's errors."""
    import pypdfium2

    try:
        return pypdfium2.PdfDocument(path, password=password or None)
    except pypdfium2.PdfiumError:
        if not password:
            raise
        return pypdfium2.PdfDocument(path, password=None)

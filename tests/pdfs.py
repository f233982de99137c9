"""Real PDF files made by the tests (fpdf2), so documents go through the real parser."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fpdf import FPDF

# Debian's fonts-dejavu-core (in the machine image) covers Latin, Greek and Cyrillic.
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


class PdfFactory:
    def __init__(self, folder: Path):
        self.folder = folder

    def make(
        self,
        name: str,
        pages: Sequence[str],
        *,
        user_password: str | None = None,
        running_header: str | None = None,
    ) -> Path:
        """Write a PDF with one page per string; encrypt it when a password is given; with a
        running header, every page also gets that header and a 'Page N of M' footer."""
        if not DEJAVU.exists():
            raise RuntimeError(f"{DEJAVU} is missing: install Debian's fonts-dejavu-core")
        pdf = _RunningFPDF(running_header) if running_header else FPDF()
        pdf.add_font("DejaVu", "", str(DEJAVU))
        pdf.set_font("DejaVu", size=11)
        for text in pages:
            pdf.add_page()
            pdf.multi_cell(0, 6, text)
        if user_password is not None:
            pdf.set_encryption(owner_password="owner-secret", user_password=user_password)
        path = self.folder / name
        pdf.output(str(path))
        return path

    def report(self, name: str = "report.pdf") -> Path:
        """A three-page report with numbers, dates and some non-Latin text."""
        return self.make(name, REPORT_PAGES)


REPORT_PAGES = (
    "Annual report 2024\nNorthwind Traders grew revenue to 4.2 million euros, up 12 percent.",
    "Operations\nThe Berlin office opened on 3 March 2024 with 45 employees.\n"
    "Η έκθεση περιγράφει τα έσοδα. Отчёт описывает доходы компании.",
    "Outlook\nThe board expects revenue of 5 million euros in 2025.\nZpráva popisuje příjmy společnosti.",
)


class _RunningFPDF(FPDF):
    def __init__(self, header_text: str):
        super().__init__()
        self.header_text = header_text

    def header(self) -> None:
        self.set_font("DejaVu", size=9)
        self.cell(0, 8, self.header_text, new_x="LMARGIN", new_y="NEXT")

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("DejaVu", size=9)
        self.cell(0, 8, f"Page {self.page_no()} of {{nb}}", align="C")

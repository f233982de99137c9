"""Write examples/northwind-annual-report.pdf, the three-page example report shown in the web UI.

The company, people and figures are invented. Each page holds its own facts (see PAGES), so
answers can cite the right page. To regenerate after editing the text (fpdf2 is a dev requirement,
see requirements-dev.txt):

    pip install -r requirements-dev.txt
    python examples/make_examples.py

The output is deterministic (fixed creation date), so an unchanged script gives an identical file.
The other examples (supplier-agreement.md, besprechungsprotokoll.txt) are plain text, edited by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).resolve().parent
PDF_PATH = HERE / "northwind-annual-report.pdf"
TITLE = "Northwind Robotics GmbH - Annual Report 2025"
CREATED = datetime(2026, 1, 1, tzinfo=UTC)

# One (heading, paragraphs) per page. Core fonts only: keep the text to Latin-1 (no euro sign, no dashes).
PAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "1. The Year at a Glance",
        (
            "Northwind Robotics GmbH builds autonomous mobile robots that move goods inside warehouses "
            "and factories. The company was founded in 2014 by Dr. Lena Hartmann and Tomasz Nowak and has "
            "its headquarters in Berlin-Adlershof, Rudower Chaussee 41.",
            "In the financial year 2025 revenue rose by 18 percent to EUR 48.6 million (2024: EUR 41.2 "
            "million). Earnings before interest and taxes (EBIT) reached EUR 5.1 million, after EUR 3.4 "
            "million in the previous year. Spending on research and development was EUR 7.3 million.",
            "On 31 December 2025 the company employed 312 people, compared with 254 a year earlier. Our "
            "best-selling product remains the NR-7 Courier, a robot that carries loads of up to 600 kg.",
            'Dr. Lena Hartmann, Managing Director since 2019, writes: "2025 was the year our robots left '
            'the pilot phase. Most customers now run whole fleets, not single machines."',
        ),
    ),
    (
        "2. Operations and Offices",
        (
            "Northwind delivered 1,940 robots in 2025 (2024: 1,520). Food and grocery logistics was the "
            "largest customer segment with 41 percent of revenue, followed by automotive suppliers with "
            "27 percent and pharmaceutical distribution with 18 percent.",
            "The Munich office opened on 14 April 2025. Its 38 engineers develop the drive units and "
            "battery systems for the next robot generation. A sales and service office in Rotterdam, "
            "serving customers in the Benelux countries, opened on 2 September 2025.",
            "Robots are assembled by our production partner Moravia Assembly s.r.o. in Brno, Czech "
            "Republic. In 2025 the plant added a second assembly line, raising capacity to 3,000 robots "
            "per year.",
            "Markus Brandt joined the company as Chief Financial Officer on 1 July 2025. He previously "
            "led finance at a logistics software firm in Hamburg.",
        ),
    ),
    (
        "3. Risks and Outlook",
        (
            "Supply risk: the lidar sensors in every robot come from a single supplier. A second "
            "supplier is being qualified and should deliver its first sensors in the third quarter of "
            "2026. Until then we hold a safety stock of four months.",
            "Customer concentration: our three largest customers together account for 34 percent of "
            "revenue. The loss of one of them would noticeably reduce growth. Further risks are rising "
            "interest rates, which delay customers' investments, and attacks on the software that "
            "controls the fleets; an external audit of our security took place in November 2025.",
            "Outlook: for 2026 the management expects revenue between EUR 55 million and EUR 58 million. "
            "A new office in Lyon, France, is planned to open in the second quarter of 2026. The annual "
            "shareholders' meeting will be held in Berlin on 12 May 2026.",
        ),
    ),
)


class _ReportPDF(FPDF):
    """A running header and a 'Page N of M' footer, like real reports (the reader drops both)."""

    def header(self) -> None:
        self.set_font("Helvetica", size=9)
        self.set_text_color(100)
        self.cell(0, 8, TITLE, new_x="LMARGIN", new_y="NEXT")
        self.ln(4)
        self.set_text_color(0)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("Helvetica", size=9)
        self.set_text_color(100)
        self.cell(0, 8, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0)


def make_report(path: Path = PDF_PATH) -> Path:
    pdf = _ReportPDF(format="A4")
    pdf.set_creation_date(CREATED)
    pdf.set_title(TITLE)
    pdf.set_author("Northwind Robotics GmbH (fictional example)")
    pdf.set_margins(20, 15, 20)
    for heading, paragraphs in PAGES:
        pdf.add_page()
        pdf.set_font("Helvetica", style="B", size=16)
        pdf.multi_cell(0, 9, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
        pdf.set_font("Helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    pdf.output(str(path))
    return path


if __name__ == "__main__":
    written = make_report()
    print(f"wrote {written} ({written.stat().st_size} bytes)")

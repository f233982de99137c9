"""The example documents in examples/: the project's reader reads them, facts sit on the pages the
UI's example questions cite, and the committed PDF is what examples/make_examples.py writes."""

import importlib.util

import pytest

from tasks.documents import load_document
from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
REPORT = EXAMPLES / "northwind-annual-report.pdf"

# fact -> the one page (1-based) it appears on
REPORT_FACTS = {
    "EUR 48.6 million": 1,
    "employed 312 people": 1,
    "founded in 2014": 1,
    "The Munich office opened on 14 April 2025": 2,
    "opened on 2 September 2025": 2,
    "Chief Financial Officer on 1 July 2025": 2,
    "between EUR 55 million and EUR 58 million": 3,
    "three largest customers together account for 34 percent": 3,
    "Berlin on 12 May 2026": 3,
}


def _one_line(text: str) -> str:
    return " ".join(text.split())  # PDF text wraps lines wherever the layout did


def test_report_has_three_pages_without_running_header_or_footer():
    document = load_document(REPORT)
    assert document.meta["format"] == "pdf"
    assert [page.number for page in document.pages] == [1, 2, 3]
    assert document.language == "en"
    for page in document.pages:
        assert "Annual Report 2025" not in page.text
        assert "Page " not in page.text


@pytest.mark.parametrize(("fact", "page_number"), REPORT_FACTS.items())
def test_report_fact_is_on_its_page_only(fact, page_number):
    document = load_document(REPORT)
    found_on = [page.number for page in document.pages if fact in _one_line(page.text)]
    assert found_on == [page_number]


def test_report_headings_open_their_pages():
    document = load_document(REPORT)
    headings = [page.text.split("\n", 1)[0] for page in document.pages]
    assert headings == ["1. The Year at a Glance", "2. Operations and Offices", "3. Risks and Outlook"]


def test_committed_report_matches_the_script(tmp_path):
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = module.make_report(tmp_path / "report.pdf")
    assert fresh.read_bytes() == REPORT.read_bytes(), "run: python examples/make_examples.py"


def test_supplier_agreement_has_the_fields_to_extract():
    document = load_document(EXAMPLES / "supplier-agreement.md")
    assert document.meta["format"] == "markdown"
    assert len(document.pages) == 1
    assert document.language == "en"
    text = document.text
    for fact in (
        "Havel Precision Components GmbH",
        "Northwind Robotics GmbH",
        "**1 February 2026**",
        "**31 January 2028**",
        "**EUR 1,284,000.00**",
        "at least 90 days before",
        "laws of the Federal Republic of Germany",
        "courts of Berlin",
    ):
        assert fact in text


def test_meeting_minutes_are_german():
    document = load_document(EXAMPLES / "besprechungsprotokoll.txt")
    assert document.meta["format"] == "text"
    assert document.meta["encoding"] == "utf-8"
    assert len(document.pages) == 1
    assert document.language == "de"
    assert "Eröffnung des Standorts Lyon" in document.text
    assert "4. Juni 2026" in document.text


@pytest.mark.parametrize(
    ("name", "max_bytes"),
    [("northwind-annual-report.pdf", 10_000), ("supplier-agreement.md", 3_000), ("besprechungsprotokoll.txt", 3_000)],
)
def test_examples_stay_small(name, max_bytes):
    assert (EXAMPLES / name).stat().st_size <= max_bytes

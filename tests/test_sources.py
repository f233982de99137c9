"""tasks.sources.verify_quotes: a quoted span of an answer is shown as a quote only when a page of
the documents holds it, and the page it names is that page."""

import pytest

from tasks.documents import Document, Page
from tasks.sources import MAX_QUOTES, related_passages, source_list, verify_quotes
from tests.fakes import FakeEngine

REPORT = Document(
    "report.pdf",
    (
        Page(1, "Annual report 2024.\nRevenue grew\n\n to   4.2 million euros in the year."),
        Page(2, "The company’s Berlin office at Hauptstraße 5 opened in March."),
        Page(3, "The board's decision was unanimous. Revenue grew to 4.2 million euros."),
    ),
)
MINUTES = Document("minutes.md", (Page(1, "Minutes."), Page(2, "The committee approved invoice 4417 on Tuesday.")))


def test_a_quote_in_the_text_is_verified_with_its_document_and_first_page():
    answer = 'The minutes say "approved invoice 4417 on Tuesday" and the report "revenue grew to 4.2 million euros".'
    quotes = verify_quotes(answer, [REPORT, MINUTES])
    assert quotes == [
        {"text": "approved invoice 4417 on Tuesday", "verified": True, "document": "minutes.md", "page": 2,
         "ocr": False},
        {"text": "revenue grew to 4.2 million euros", "verified": True, "document": "report.pdf", "page": 1,
         "ocr": False},
    ]  # fmt: skip  # in the answer's order; page 3 holds the second quote too, but page 1 comes first


def test_a_quote_in_no_document_is_marked_unverified():
    answer = 'It says "revenue grew to 4.3 million euros" and "the office closed in May".'
    assert verify_quotes(answer, [REPORT, MINUTES]) == [
        {"text": "revenue grew to 4.3 million euros", "verified": False, "document": None, "page": None, "ocr": False},
        {"text": "the office closed in May", "verified": False, "document": None, "page": None, "ocr": False},
    ]
    assert verify_quotes('"Annual report 2024."', []) == [
        {"text": "Annual report 2024.", "verified": False, "document": None, "page": None, "ocr": False}
    ]


@pytest.mark.parametrize(
    ("quoted", "page"),
    [
        ("Revenue grew to 4.2 million", 1),  # the page breaks the line and doubles the spaces
        ("revenue  grew\nto 4.2\tmillion", 1),  # and the answer does
        ("ANNUAL REPORT 2024", 1),  # case
        ("BERLIN OFFICE AT HAUPTSTRASSE 5", 2),  # case folded, as German writes ß in capitals
        ("The company's Berlin office", 2),  # a straight apostrophe for the page's curly one
        ("The board’s decision", 3),  # a curly apostrophe for the page's straight one
    ],
)
def test_quotes_are_compared_without_case_whitespace_or_apostrophe_style(quoted, page):
    [quote] = verify_quotes(f'As written: "{quoted}".', [REPORT])
    assert quote == {"text": quoted, "verified": True, "document": "report.pdf", "page": page, "ocr": False}


def test_other_differences_are_not_forgiven():
    for quoted in ("Revenue grew to 4.2 millions", "The companys Berlin office", "Revenue grew to4.2 million"):
        assert verify_quotes(f'"{quoted}"', [REPORT])[0]["verified"] is False, quoted


MARKS = [('"', '"'), ("“", "”"), ("„", "“"), ("«", "»"), ("「", "」"), ("『", "』")]  # opening, closing


@pytest.mark.parametrize(("opening", "closing"), MARKS)
def test_every_kind_of_quotation_mark_is_read(opening, closing):
    [quote] = verify_quotes(f"It reads {opening} Berlin office at Hauptstraße {closing} there.", [REPORT])
    expected = {"text": "Berlin office at Hauptstraße", "verified": True, "document": "report.pdf", "page": 2}
    assert quote == {**expected, "ocr": False}


def test_a_quote_is_8_to_500_characters_long():
    page = "x" * 600
    document = Document("long.txt", (Page(1, page),))
    assert verify_quotes('"xxxxxxx" is short', [document]) == []  # 7 characters: a name, not a quote
    assert [q["text"] for q in verify_quotes('"xxxxxxxx"', [document])] == ["x" * 8]
    assert [q["verified"] for q in verify_quotes(f'"{"x" * 500}"', [document])] == [True]
    assert verify_quotes(f'"{"x" * 501}" and more', [document]) == []  # longer is not a quote
    assert verify_quotes(f"“{'x' * 100_000}” and more", [document]) == []


def test_many_quotes_stay_bounded_in_number_and_work():
    """Each quote is looked for in every page: an answer of thousands of quotes, against a large
    document, checks only the first MAX_QUOTES."""
    pages = range(1, MAX_QUOTES + 1)
    big = Document("big.txt", tuple(Page(n, f"Clause {n}. The parties agree to term {n}. " * 2000) for n in pages))
    answer = " ".join(f'"the parties agree to term {n}."' for n in range(1, 100 * MAX_QUOTES))
    quotes = verify_quotes(answer, [big])
    assert [(q["text"], q["page"]) for q in quotes] == [(f"the parties agree to term {n}.", n) for n in pages]


def test_a_huge_answer_without_quotes_finds_none():
    assert verify_quotes("“" + "no closing mark " * 100_000, [REPORT]) == []
    assert verify_quotes("«" * 200_000, [REPORT]) == []
    assert verify_quotes("", [REPORT]) == []


def test_a_quote_and_a_source_from_a_page_read_by_ocr_say_so():
    scan = Document("scan.pdf", (Page(1, "Typed cover page."), Page(2, "The contract ends on 30 June 2026.", ocr=True)))
    [quote] = verify_quotes('It says "contract ends on 30 June 2026".', [scan, MINUTES])
    assert quote == {"text": "contract ends on 30 June 2026", "verified": True, "document": "scan.pdf", "page": 2,
                     "ocr": True}  # fmt: skip
    sources = source_list(related_passages([scan], "When does the contract end?", FakeEngine()), [scan])
    assert sources and all(source["ocr"] == (2 in source["pages"]) for source in sources)
    assert any(source["label"].endswith(", read by OCR") for source in sources)

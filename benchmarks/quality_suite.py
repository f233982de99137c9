"""The documents and gold answers of the answer-quality benchmark (benchmarks/quality.py).

Everything is written by code on the spot, the same bytes every run, offline: an English annual
report (one topic a page, facts on known pages, near-duplicate distractors on other pages), a
40-page harbour log with two facts deep inside (far over a small model's context), German and
French reports, an HTML guide with headings, an invoice (PDF), a German Rechnung (TXT), a supply
contract, meeting minutes and a technical report (Markdown). Pages are short (150-250 words) so
SmolLM2-135M on two CPU cores gets through the full suite in minutes. Filler sentences hold no
numbers or names, so every gold answer is in one place only. No line repeats on every page: the
app drops such lines as running headers.

    python -m benchmarks.quality_suite      # builds both sizes and checks each gold page holds its answer
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmarks.quality_documents import WRITERS

Size = Literal["smoke", "full"]


@dataclass(frozen=True)
class Question:
    document: str  # file name inside suite.folder
    question: str
    answers: tuple[str, ...]  # accepted gold answers, any one counts; the first is written on the gold page
    pages: tuple[int, ...]  # 1-based pages that hold the answer (1 for .txt/.md; .html: the heading's section)
    language: str  # ISO 639-1
    kind: str  # "fact" | "distractor" | "long" | "multilingual" | "crosslingual" | "html"


@dataclass(frozen=True)
class FieldItem:
    document: str
    fields: tuple[str, ...]  # field names as a user types them
    gold: dict[str, str]  # field -> expected value as written in the document


@dataclass(frozen=True)
class LabelItem:
    document: str
    labels: tuple[str, ...]
    gold: str


@dataclass(frozen=True)
class SummaryItem:
    document: str
    facts: tuple[str, ...]  # short strings a good summary mentions (matched case-insensitively)


@dataclass(frozen=True)
class Suite:
    folder: Path
    questions: tuple[Question, ...]
    fields: tuple[FieldItem, ...]
    labels: tuple[LabelItem, ...]
    summaries: tuple[SummaryItem, ...]


# Neutral sentences (no numbers, no names) that make a page look like a page; one a line.
# document, language -> (kind, gold page, question, accepted answers separated by "|", the first on the page)
QUESTION_TABLE = {
    ("annual-report.pdf", "en"): (
        ("fact", 1, "In which city is Norvale Instruments headquartered?", "Tallinn"),
        ("fact", 3, "How many people did Norvale Instruments employ at the end of 2023?", "412"),
        ("fact", 4, "What is the name of Norvale Instruments' flagship product?", "Aqualis"),
        ("fact", 5, "Which company is the single supplier of optical glass?", "Lumetra|Lumetra GmbH"),
        ("distractor", 1, "In which year did the Lisbon office open?", "2019|March 2019"),
        ("distractor", 3, "In which year did the Porto office open?", "2021|June 2021"),
        ("distractor", 2, "What was the revenue of Norvale Instruments in 2023?", "84.6 million euros|84.6"),
        ("distractor", 6, "What revenue does the board expect for 2024?", "97 million euros|97"),
    ),
    ("harbour-log.pdf", "en"): (
        ("long", 27, "Who reported that the northern beacon had failed?", "Tomas Berglund|Berglund"),
        ("long", 35, "How much did the anchor recovered by the salvage tug Kestrel weigh?",
         "2,750 kilograms|2,750|2750|2.750"),
    ),
    ("jahresbericht.pdf", "de"): (
        ("multilingual", 1, "Wer ist die Geschäftsführerin der Stadtwerke Bergheim?", "Katrin Vogel"),
        ("multilingual", 2, "In welchem Jahr wurde das Wasserwerk am Mühlbach in Betrieb genommen?",
         "2022|Oktober 2022"),
    ),
    ("jahresbericht.pdf", "en"): (  # asked in English: no word in common with the German report
        ("crosslingual", 1, "Who is the managing director of the municipal utility?", "Katrin Vogel"),
    ),
    ("rapport.pdf", "fr"): (
        ("multilingual", 1, "Qui est le directeur de l'Institut Verrier de Valmont ?", "Julien Moreau"),
        ("multilingual", 3, "Depuis quelle année l'institut collabore-t-il avec l'Université de Nantes ?", "2017"),
    ),
    ("library.html", "en"): (
        ("html", 3, "How many books may a member borrow at a time?", "12"),
        ("html", 5, "Who looks after the rare books collection?", "Helen Marsh"),
    ),
}  # fmt: skip
QUESTIONS = tuple(
    Question(document, question, tuple(answers.split("|")), (page,), language, kind)
    for (document, language), rows in QUESTION_TABLE.items()
    for kind, page, question, answers in rows
)
INVOICE_FIELDS = ("invoice number", "date", "total", "customer")
FIELDS = (
    FieldItem("invoice.pdf", INVOICE_FIELDS, {"invoice number": "INV-2024-0173", "date": "14 March 2024",
                                              "total": "1,283.04", "customer": "Brightwater Cafe"}),
    FieldItem("rechnung.txt", INVOICE_FIELDS, {"invoice number": "RE-2024-0419", "date": "22.05.2024",
                                               "total": "2.356,80", "customer": "Bäckerei Lindner"}),
    FieldItem("supply-contract.pdf", ("supplier", "buyer", "start date"),
              {"supplier": "Lumetra GmbH", "buyer": "Norvale Instruments", "start date": "1 July 2024"}),
)  # fmt: skip
LABELS_CHOICES = ("invoice", "contract", "meeting minutes", "report")
LABELS = tuple(
    LabelItem(document, LABELS_CHOICES, gold)
    for document, gold in (("invoice.pdf", "invoice"), ("supply-contract.pdf", "contract"),
                           ("minutes.txt", "meeting minutes"), ("test-report.md", "report"))
)  # fmt: skip
SUMMARIES = (
    SummaryItem("annual-report.pdf", ("Norvale", "Lisbon", "2019", "84.6")),
    SummaryItem("jahresbericht.pdf", ("Bergheim", "Katrin Vogel", "2022")),
)


def build_suite(folder: Path, size: Size = "full") -> Suite:
    """Write the documents into `folder` and return the items; size "smoke" = one item of each kind
    (for a test on a tiny random model), "full" = the whole suite. Only the documents the items
    name are written, so a smoke run does not pay for the 40-page log."""
    if size not in ("smoke", "full"):
        raise ValueError(f"size must be 'smoke' or 'full', not {size!r}")
    suite = Suite(folder, QUESTIONS, FIELDS, LABELS, SUMMARIES)
    if size == "smoke":
        suite = Suite(folder, QUESTIONS[:1], FIELDS[:1], LABELS[:1], SUMMARIES[:1])
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted({item.document for items in _items(suite) for item in items}):
        WRITERS[name](folder / name)
    return suite


def _items(suite: Suite) -> tuple[tuple, ...]:
    return suite.questions, suite.fields, suite.labels, suite.summaries


def check_suite(suite: Suite) -> list[str]:
    """Problems with a written suite: a PDF question whose first answer is not on its gold page, a
    field or summary fact not in its document's text. Whitespace is folded (lines wrap anywhere)."""
    from pypdf import PdfReader

    from tasks.readers import read_html

    def text(name: str) -> list[str]:
        path = suite.folder / name
        if name.endswith(".pdf"):
            pages = [page.extract_text() for page in PdfReader(path).pages]
        elif name.endswith(".html"):
            pages = read_html(path, name)[0]  # a section a page, as the app reads it
        else:
            pages = [path.read_text()]
        return [" ".join(page.split()) for page in pages]

    problems = [f"{q.document} p{q.pages[0]}: {q.answers[0]!r} missing" for q in suite.questions
                if q.answers[0] not in text(q.document)[q.pages[0] - 1]]  # fmt: skip
    wanted = [(f.document, gold) for f in suite.fields for gold in f.gold.values()]
    wanted += [(s.document, fact) for s in suite.summaries for fact in s.facts]
    problems += [f"{name}: {value!r} missing" for name, value in wanted if value not in " ".join(text(name))]
    return problems


if __name__ == "__main__":
    for size in ("smoke", "full"):
        with tempfile.TemporaryDirectory() as folder:
            built = build_suite(Path(folder), size)
            print(f"{size}: {len(list(Path(folder).iterdir()))} files,", dict(Counter(q.kind for q in built.questions)))
            print(f"  {len(built.fields)} field, {len(built.labels)} label, {len(built.summaries)} summary items")
            print("  problems:", check_suite(built) or "none")

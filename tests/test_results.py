"""app/results.py: one formatter of a result for the command line, the web UI and the exports."""

from app.results import (
    ResultView,
    body_text,
    json_text,
    result_markdown,
    sources_markdown,
    sources_text,
    status_line,
)
from tasks.events import DocumentSummary, Extraction, TaskResult

FIELDS = {
    "request": "When did it open?",
    "sources": [{"label": "memo.txt, page 2", "text": "It opened in *March*.", "document": "memo.txt", "pages": [2],
                 "score": 1.5}],
    "quotes": [
        {"text": "opened in March", "verified": True, "document": "memo.txt", "page": 2},
        {"text": "closed in May", "verified": False, "document": None, "page": None},
    ],
    "sections": [{"document": "memo.txt", "pages": [1, 2, 3], "summary": "The office."}],
    "extraction": Extraction({"type": "object"}, {"city": None, "notes": "x" * 9}, ["notes"], {"city": "Paris"}),
}  # fmt: skip


def result(task: str = "ask", **fields) -> TaskResult:
    return TaskResult(task, "It opened in March.", "retrieval", DocumentSummary("memo.txt", 3, 900), "time_limit",
                      "granite", usage={"prompt_tokens": 1234, "generated_tokens": 16, "cached_tokens": 1000},
                      timings={"total_seconds": 2.345}, **fields)  # fmt: skip


def test_every_form_shows_the_same_status_and_sources():
    view = ResultView.from_result(result(**FIELDS))
    status = status_line(view)
    assert status == ("Done (stopped at the time limit) · strategy: best passages · 1,234 prompt tokens "
                      "(1,000 cached) · 16 new tokens · 2.3 s")  # fmt: skip
    assert sources_text(view) == [
        "[source: memo.txt, page 2]",
        '[Quote found in memo.txt, page 2: "opened in March"]',
        '[Not found in the documents, so not a quote: "closed in May"]',
        "[section: memo.txt, pages 1-3]",
        "[city: the model wrote 'Paris', which is not in the documents, so it is null]",
        "[notes: the value reached the length limit and may go on]",
    ]
    markdown = sources_markdown(view)
    assert "**memo.txt, page 2**  \n> It opened in \\*March\\*." in markdown  # the passage as written
    assert "✓ Quote found in memo.txt, page 2:  \n> opened in March" in markdown
    assert "✗ Not found in the documents, so not a quote: closed in May" in markdown
    assert "**memo.txt, pages 1-3**  \n> The office." in markdown
    assert "✗ city: the model wrote 'Paris', which is not in the documents, so it is null" in markdown
    assert "⚠ notes: the value reached the length limit and may go on" in markdown
    exported = result_markdown(view)
    assert exported.startswith("# Ask: memo.txt\n\n**Question:** When did it open?\n\nIt opened in March.\n")
    assert markdown in exported and f"- {status}\n" in exported and "- model: granite\n" in exported


def test_the_json_form_round_trips_and_an_api_callers_details_are_enough():
    details = result(**FIELDS).to_json()
    assert ResultView.from_json(details) == ResultView.from_result(result(**FIELDS))
    assert json_text({"name": "café"}) == '{\n  "name": "café"\n}'
    bare = ResultView.from_json({"task": "ask", "text": "It opened in March."})  # what a caller may send
    assert sources_markdown(bare) == "No sources for this result." and sources_text(bare) == []
    assert "# Ask: documents" in result_markdown(bare)


def test_a_classification_shows_its_labels_in_every_form():
    labels = [{"label": "report", "probability": 0.75, "log_likelihood": -1.0},
              {"label": "<b>invoice</b>", "probability": 0.25, "log_likelihood": -2.1}]  # fmt: skip
    view = ResultView.from_result(result("classify", labels=labels))
    assert body_text(view) == " 75.00%  report\n 25.00%  <b>invoice</b>\n"
    assert "```\n 75.00%  report\n 25.00%  <b>invoice</b>\n```" in result_markdown(view)  # as code: nothing live
    assert view.labels == [("report", 0.75), ("<b>invoice</b>", 0.25)]


def test_numbered_citations_come_first_in_the_cli_lines_and_the_export():
    from app.results import ResultView, result_markdown, sources_text

    citation = {"number": 1, "document": "report.pdf", "page": 2, "text": "The Berlin\noffice opened.", "ocr": True}
    details = {
        "task": "ask",
        "text": "It opened in 2024.",
        "citations": [citation, {**citation, "anchor": 3}],  # one sentence cited twice: listed once
        "sources": [{"label": "report.pdf, page 2", "text": "# Offices\nThe Berlin office opened."}],
    }
    view = ResultView.from_json(details)
    assert sources_text(view) == [
        '[1] report.pdf, page 2, read by OCR: "The Berlin office opened."',
        "[source: report.pdf, page 2]",
    ]
    exported = result_markdown(view)
    assert exported.count("\\[1\\] report.pdf, page 2") == 1 and "\\# Offices" in exported


def test_a_conversation_is_exported_question_by_question():
    from app.results import ResultView, conversation_markdown

    turns = [
        {"task": "ask", "text": f"Answer {n}.", "question": f"# Question {n}?", "document": {"name": "a.pdf"},
         "citations": [{"number": 1, "document": "a.pdf", "page": n, "text": f"Evidence {n}."}]}
        for n in (1, 2)
    ]  # fmt: skip
    exported = conversation_markdown([ResultView.from_json(turn) for turn in turns])
    assert exported.startswith("# Ask: a.pdf\n")
    assert (
        exported.index("## 1. \\# Question 1?") < exported.index("Answer 1.") < exported.index("## 2. \\# Question 2?")
    )
    assert "\\[1\\] a.pdf, page 2" in exported and exported.count("### Sources") == 2

"""tasks.citations: numbered, sentence-level evidence for an answer (quotes, matched sentences,
else the top passage), with where it is on a PDF page; map-reduce parts as they finish; the
expected seconds on progress events; and the PDF helpers the viewer needs."""

import pytest

from tasks import positions
from tasks.ask import ask
from tasks.chunking import chunk_documents
from tasks.citations import MAX_CANDIDATES, MAX_CITATIONS, candidates, cite, ranked_passages, sentence_spans
from tasks.documents import Document, Page, load_document
from tasks.errors import DocumentError
from tasks.events import PartDone, Progress, TaskResult, TextDelta
from tasks.options import TaskOptions
from tasks.retrieval import rank
from tasks.summarize import summarize
from tasks.workbench import Workbench
from tests.fakes import FakeEngine
from tests.pdfs import REPORT_PAGES

QUESTION = "When did the Berlin office open?"
REPORT = Document(
    "report.txt",
    (
        Page(1, "Annual report 2024\nNorthwind Traders grew revenue to 4.2 million euros, up 12 percent."),
        Page(2, "Operations\nThe Berlin office opened on 3 March 2024 with 45 employees. The Paris office "
                "stayed closed all year. Staff in Lyon moved to a new building."),
        Page(3, "Outlook\nThe board expects revenue of 5 million euros in 2025. Hiring continues."),
    ),
    {"language": "en"},
)  # fmt: skip


def answer(reply: str, documents=(REPORT,), question: str = QUESTION) -> TaskResult:
    result = list(ask(list(documents), question, TaskOptions(), FakeEngine(reply=reply)))[-1]
    assert isinstance(result, TaskResult)
    return result


def test_an_answer_sentence_that_restates_a_page_sentence_cites_that_sentence():
    reply = "The Berlin office was opened in March 2024 and had 45 employees. That is all I know."
    result = answer(reply)
    [citation] = result.citations
    assert citation["kind"] == "match" and citation["page"] == 2 and citation["document"] == "report.txt"
    assert citation["text"] == "The Berlin office opened on 3 March 2024 with 45 employees."  # not the whole page
    assert citation["anchor"] == reply.index(" That is all")  # right after its answer sentence
    assert citation["number"] == 1 and citation["rects"] == [] and citation["ocr"] is False
    assert result.sources[citation["source"]]["pages"] == [1, 2, 3]


def test_the_same_evidence_keeps_its_number_and_numbers_follow_the_answer():
    reply = ("Revenue should reach 5 million euros in 2025, the board expects. The Berlin office opened on "
             "3 March 2024. Again: the board expects revenue of 5 million euros.")  # fmt: skip
    citations = answer(reply).citations
    assert [(c["number"], c["page"]) for c in citations] == [(1, 3), (2, 2), (1, 3)]
    assert [c["anchor"] for c in citations] == [end for _, end in sentence_spans(reply)]


def test_a_verified_quote_is_its_own_evidence_and_an_unverified_one_is_not_cited():
    reply = 'The report says "the board expects revenue of 5 million euros" for 2025.'
    [citation] = answer(reply).citations
    assert citation["kind"] == "quote" and citation["page"] == 3
    assert citation["text"] == "the board expects revenue of 5 million euros"
    assert citation["anchor"] == len(reply)
    made_up = answer('It says "the Madrid branch doubled its sales" there.').citations
    assert all(c["kind"] != "quote" and "Madrid" not in c["text"] for c in made_up)


def test_a_meaningless_answer_cites_the_sentence_of_the_top_passage_that_best_fits_the_question():
    reply = "Purple zebras quickly sing bananas. Violins melt."
    citations = answer(reply).citations
    assert citations and all(c["kind"] == "passage" and c["anchor"] == len(reply) for c in citations)
    assert citations[0]["text"] == "The Berlin office opened on 3 March 2024 with 45 employees."
    assert citations[0]["source"] == 0 and len(citations) <= 2


def test_citations_on_a_pdf_lie_where_the_sentence_is(pdfs):
    document = load_document(pdfs.report())
    result = answer("The Berlin office opened on 3 March 2024, with 45 employees.", [document])
    [citation] = result.citations
    assert citation["page"] == 2 and citation["text"].startswith("The Berlin office opened")
    assert citation["rects"] and all(0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 for x0, y0, x1, y1 in citation["rects"])
    words = positions.text_layer_words(document.path, 2)
    boxes = [box for word, box in zip(words.words, words.boxes, strict=True) if word in ("Berlin", "employees.")]
    heading = next(box for word, box in zip(words.words, words.boxes, strict=True) if word == "Operations")
    top, bottom = min(c[1] for c in citation["rects"]), max(c[3] for c in citation["rects"])
    assert all(top < y1 and y0 < bottom for _, y0, _, y1 in boxes)  # the sentence's lines are covered
    assert not top < heading[1] < bottom  # the heading above it is not


def test_a_text_document_has_no_rects_and_the_result_json_has_the_citations():
    result = answer("The Berlin office opened on 3 March 2024 with 45 employees.")
    data = result.to_json()
    assert data["citations"] == result.citations and data["citations"][0]["rects"] == []
    assert set(data["citations"][0]) == {"number", "document", "page", "text", "kind", "anchor", "source", "ocr",
                                         "rects"}  # fmt: skip


def test_at_most_eight_citations_numbered_without_gaps():
    pages = tuple(
        Page(n, f"Depot {n} in town{n} shipped {n * 37} crates of cargo{n} on day {n}.") for n in range(1, 21)
    )
    document = Document("depots.txt", pages, {"language": "en"})
    reply = " ".join(f"Depot {n} in town{n} shipped {n * 37} crates of cargo{n}." for n in range(1, 21))
    citations = answer(reply, [document], "How many crates did the depots ship?").citations
    assert len(citations) == MAX_CITATIONS
    numbers = [c["number"] for c in citations]
    assert sorted(set(numbers)) == list(range(1, max(numbers) + 1)) and numbers == sorted(numbers)


def test_a_huge_answer_against_a_long_document_stays_bounded():
    text = "\n\n".join(f"Record {n}. The auditor checked ledger {n} and signed it." for n in range(20_000))
    document = Document("ledger.txt", (Page(1, text),), {"language": "en"})  # one page of about a million characters
    engine = FakeEngine()
    passages = rank(chunk_documents([document], engine), "auditor ledger signed")[:5]
    pool = candidates(ranked_passages(passages), [document])
    assert 0 < len(pool) <= MAX_CANDIDATES and len(pool) < 600  # of 40,000: only the windows of 5 passages
    reply = " ".join(f"Word{n} is here." for n in range(5_000))
    citations = cite(reply, "What did the auditor do?", passages, [document], [])
    assert 0 < len(citations) <= MAX_CITATIONS


def test_an_encrypted_pdf_keeps_its_password_for_highlights_but_never_shows_it(pdfs):
    path = pdfs.make("secret.pdf", list(REPORT_PAGES), user_password="hunter2")
    document = load_document(path, password="hunter2")
    assert document.password == "hunter2" and "hunter2" not in repr(document) and "hunter2" not in str(document.meta)
    found = positions.highlight(document, 2, "The Berlin office opened")
    assert found is not None and found.rects
    result = answer("The Berlin office opened on 3 March 2024 with 45 employees.", [document])
    assert result.citations[0]["rects"] and "hunter2" not in str(result.to_json())
    assert load_document(pdfs.report()).password is None


def test_pdf_pages_for_the_viewer(pdfs):
    path = pdfs.report()
    assert positions.pdf_page_count(path) == 3
    image = positions.render_pdf_page(path, 3, dpi=50)
    assert image.width > 100 and image.height > image.width
    for number in (0, 4):
        with pytest.raises(DocumentError, match=f"there is no page {number} \\(it has 3\\)"):
            positions.render_pdf_page(path, number)
    secret = pdfs.make("secret.pdf", ["Hidden page."], user_password="pw")
    assert positions.pdf_page_count(secret, password="pw") == 1
    with pytest.raises(DocumentError):
        positions.pdf_page_count(secret)


def test_document_names_are_the_names_read_gives(tmp_path):
    paths = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "notes.txt")
        paths[-1].write_text(f"Notes from {folder}.")
    names = Workbench.document_names(paths)
    assert names == ["notes.txt", "notes.txt (2)"]
    assert [d.name for d in Workbench(FakeEngine()).read(paths)] == names


def test_map_reduce_yields_each_part_as_it_is_done_before_the_merge():
    pages = tuple(
        Page(n, f"Section {n}. The committee reviewed batch {n} and approved it. " * 30) for n in range(1, 21)
    )
    document = Document("ledger.txt", pages, {"language": "en"})
    events = list(summarize([document], TaskOptions(max_new_tokens=64, context_budget=1024), FakeEngine()))
    result = events[-1]
    assert result.strategy == "map-reduce"
    parts = [e for e in events if isinstance(e, PartDone)]
    assert [(p.number, p.total) for p in parts] == [(n, len(result.sections)) for n in range(1, len(parts) + 1)]
    assert [list(p.pages) for p in parts] == [s["pages"] for s in result.sections]
    assert [p.text for p in parts] == [s["summary"] for s in result.sections]
    assert {p.document for p in parts} == {"ledger.txt"}
    first_delta = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert events.index(parts[-1]) < first_delta
    first_part = next(e for e in events if isinstance(e, Progress) and e.message.startswith("Summarizing part 1"))
    assert first_part.expected_seconds > 0


def test_progress_carries_the_expected_seconds(tiny_workbench, tmp_path):
    path = tmp_path / "memo.txt"
    path.write_text("The launch is on 9 May. The budget is 40,000 euros.")
    events = list(tiny_workbench.ask(path, "When is the launch?", tiny_workbench.options(max_new_tokens=8)))
    reading = [e for e in events if isinstance(e, Progress) and "expected wait" in e.message]
    assert reading and all(e.expected_seconds > 0 for e in reading)
    assert events[-1].citations is not None

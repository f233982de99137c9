"""The page's parts that need no browser: progress, answers with markers, sources, the viewer,
the interface's languages, the paced event stream and the per-file cards."""

from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace

import pytest

from app.chat import answer_markdown
from app.i18n import LANGUAGES, browser_language, tables, text
from app.progress import RunProgress
from app.sources_view import sources_html
from app.streaming import paced
from app.viewer import Registry, open_reference, turn_page
from tasks.events import PartDone, Progress, TextDelta
from tests.test_signin import StoppedClock


def test_progress_ticks_a_step_only_when_the_next_begins_and_counts_time_left():
    clock = StoppedClock()
    progress = RunProgress("en", clock)
    progress.on(Progress("Reading the documents"))
    assert "✓" not in progress.html() and "▶" in progress.html()
    progress.on(Progress("Reading 300 tokens", expected_seconds=10))
    clock.now += 4
    html = progress.html()
    assert "✓</span> Reading the documents" in html and "▶</span> Reading 300 tokens" in html
    assert "40%" in html and "4 s elapsed" in html and "about 6 s left" in html
    clock.now += 20  # slower than measured: never 100% before the end, and it says so
    assert "97%" in progress.html() and "taking longer than expected" in progress.html()
    progress.end("done", "finished")
    assert "100%" in progress.html() and "✓</span> Reading 300 tokens" in progress.html()
    assert 'role="status"' in progress.html() and 'aria-live="polite"' in progress.html()


def test_progress_of_a_map_reduce_summary_counts_parts_done_and_keeps_the_whole_estimate():
    clock = StoppedClock()
    progress = RunProgress("en", clock)
    progress.on(Progress("Summarizing part 1 of 3", 1, 3, expected_seconds=100))
    progress.on(Progress("Reading 500 tokens", expected_seconds=5))  # one part's generation: not the whole
    progress.on(PartDone(1, 3, "a.pdf", (1, 2), "Part one."))
    progress.on(Progress("Summarizing part 2 of 3", 2, 3))
    clock.now += 10
    html = progress.html()
    assert "25%" in html  # one part of three, plus the merge
    assert "about 1 min 30 s left" in html
    assert "✓</span> Reading 500 tokens" in html and "▶</span> Summarizing part 2 of 3" in html
    assert "1 / 3" in html


def test_a_map_reduce_summary_slower_than_estimated_projects_from_its_parts():
    clock = StoppedClock()
    progress = RunProgress("en", clock)
    progress.on(Progress("Summarizing part 1 of 3", 1, 3, expected_seconds=20))
    progress.on(Progress("Reading 500 tokens", expected_seconds=5))
    assert 'class="run-headline">Summarizing part 1 of 3<' in progress.html()  # not the part's generation
    clock.now += 30
    progress.on(PartDone(1, 3, "a.pdf", (1,), "Part one."))  # 30 s a part: four steps, 120 s in all
    assert "about 1 min 30 s left" in progress.html()


def test_progress_speaks_the_browsers_language():
    progress = RunProgress("de", StoppedClock())
    progress.end("done")
    assert text("progress.done", "de") in progress.html()


def test_answers_get_markers_at_their_anchors_and_the_models_own_brackets_are_not_markers():
    answer = 'The office opened in 2024 [1]. See <img src="http://x/y.png"> and ![i](http://x).'
    citations = [{"number": 1, "anchor": 30}, {"number": 2, "anchor": len(answer)}, {"number": 3, "anchor": 30}]
    shown = answer_markdown(answer, citations)
    assert "2024 [\u200b1]" in shown  # the model's "[1]" cannot become a button
    assert ".\u00a0[1]\u2060\u00a0[3]\u2060" in shown and shown.endswith("\u00a0[2]\u2060")
    assert "<img" not in shown and "](" not in shown


@pytest.mark.parametrize(
    "forged", ["[1]\u2060", "[1\\]\u2060", "&#91;1]&#8288;", "&lsqb;1&rsqb;&NoBreak;", "\\[1\\]&#x2060;"]
)
def test_no_way_of_writing_a_marker_in_an_answer_survives(forged):
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").render(answer_markdown(f"Invented claim {forged}.", []))
    assert re.search(r"\[\d{1,2}\]\u2060", rendered) is None, rendered


def test_sources_are_plain_text_grouped_by_file_and_page():
    details = {
        "task": "ask",
        "citations": [
            {"number": 1, "document": "a.pdf", "page": 2, "text": "# 1. Scope <b>x</b>", "kind": "match", "ocr": True},
            {"number": 2, "document": "a.pdf", "page": 2, "text": "Second.", "kind": "quote", "ocr": True},
            {"number": 3, "document": "b.txt", "page": 1, "text": "Third.", "kind": "passage", "ocr": False},
        ],
        "sources": [{"document": "a.pdf", "pages": [2]}, {"document": "a.pdf", "pages": [5], "ocr": False}],
        "quotes": [{"text": "never said", "verified": False}],
    }
    html = sources_html(details, "ask-0")
    assert html.count('class="src-doc"') == 2 and html.count('class="src-page"') == 2  # a.pdf p. 2 once
    assert "# 1. Scope &lt;b&gt;x&lt;/b&gt;" in html and "<b>x" not in html
    assert 'data-cite="ask-0:c:1"' in html and 'data-cite="ask-0:p:1"' in html  # a.pdf p. 5: read, not cited
    assert text("sources.ocr") in html and text("sources.not_quote") in html
    assert 'dir="auto"' in html


@pytest.fixture
def cited_report(pdfs, tiny_workbench, tmp_path):
    """A registry with one answer citing page 2 of the report and a text file."""
    report = pdfs.report()
    notes = tmp_path / "notes.txt"
    notes.write_text("First line.\n\nThe Berlin office opened in March.\n", encoding="utf-8")
    rects = [[0.1, 0.2, 0.5, 0.23]]
    registry = Registry()
    citations = [
        {"number": 1, "document": "report.pdf", "page": 2, "text": "The Berlin office opened", "rects": rects},
        {"number": 2, "document": "notes.txt", "page": 1, "text": "The Berlin office opened in March."},
    ]
    details = {"task": "ask", "citations": citations, "sources": [{"document": "report.pdf", "pages": [3]}]}
    registry.remember("ask-0", details, {"report.pdf": str(report), "notes.txt": str(notes)})
    return registry


def test_a_citation_opens_its_pdf_page_with_the_rectangles_over_the_image(tiny_workbench, cited_report):
    html, shown = open_reference(tiny_workbench, cited_report, "ask-0:c:1@123", None, "salt", "en")
    assert '<img class="viewer-image" src="data:image/png;base64,' in html
    assert 'class="viewer-mark selected"' in html and "left:10.000%;top:20.000%;width:40.000%;height:3.000%" in html
    assert shown["page"] == 2 and shown["pages"] == 3 and "Page 2 of 3" in html
    html, shown = turn_page(tiny_workbench, cited_report, shown, 1, None, "salt", "en")
    assert shown["page"] == 3 and "viewer-mark" not in html
    html, shown = turn_page(tiny_workbench, cited_report, shown, 1, None, "salt", "en")
    assert shown["page"] == 3  # the last page stays


def test_a_citation_in_a_text_file_marks_its_sentence_and_unknown_references_open_nothing(tiny_workbench, cited_report):
    html, _shown = open_reference(tiny_workbench, cited_report, "ask-0:c:2", None, "salt", "en")
    assert '<mark class="viewer-text-mark">The Berlin office opened in March.</mark>' in html
    for reference in ("ask-1:c:1", "ask-0:c:9", "ask-0:p:7", "ask-0:x:1", "nonsense", "ask-0:c:1/../../etc"):
        html, shown = open_reference(tiny_workbench, cited_report, reference, None, "salt", "en")
        assert shown is None and text("viewer.empty") in html


def test_every_language_has_every_string_with_its_placeholders():
    english = tables()["en"]
    for code in LANGUAGES:
        assert set(tables()[code]) == set(english), code
        assert text("viewer.page", code, page=2, pages=9).count("2") >= 1
    assert tables()["ja"]["tab.summarize"] != english["tab.summarize"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("ja-JP,ja;q=0.9,en;q=0.8", "ja"),
        ("xx-YY, ar;q=0.5, de;q=0.7", "de"),
        ("zh-CN", "zh"),
        ("", "en"),
        ("fr;q=abc, nl", "nl"),
    ],
)
def test_the_browsers_language_is_the_first_the_product_speaks(header, expected):
    assert browser_language(SimpleNamespace(headers={"accept-language": header})) == expected


def test_paced_events_come_with_heartbeats_and_an_error_is_raised_here():
    def slow():
        yield TextDelta("a")
        time.sleep(0.35)
        yield TextDelta("b")
        raise ValueError("boom")

    seen = []
    with pytest.raises(ValueError, match="boom"):
        for event in paced(slow, every=0.1):
            seen.append(event)
    assert seen[0] == TextDelta("a") and seen[-1] == TextDelta("b") and None in seen


def test_a_closed_page_cancels_its_task():
    cancel = threading.Event()

    def endless():
        while not cancel.is_set():
            yield TextDelta("x")
            time.sleep(0.01)

    stream = paced(endless, every=0.1, cancel=cancel)
    next(stream)
    stream.close()
    assert cancel.is_set()


def test_a_bad_file_gets_an_error_chip_and_the_good_one_its_card(tiny_workbench, pdfs, tmp_path):
    from app.cards import describe_documents

    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7 not really")
    report = pdfs.report()
    html, data, usable = describe_documents(tiny_workbench, [str(report), str(broken)], tiny_workbench.options())
    assert usable == [str(report)]
    assert html.count('class="doc-card"') == 1 and html.count('class="doc-chip error"') == 1
    assert data["errors"][0]["file"] == "broken.pdf" and data["documents"][0]["name"] == "report.pdf"


def test_a_poster_sized_page_is_drawn_small_for_the_viewer(tmp_path):
    from fpdf import FPDF

    from app.viewer import MAX_VIEW_SIDE
    from tasks.positions import render_pdf_page

    pdf = FPDF(format=(3000, 2000))  # millimetres: 118 x 79 inches, 11,800 pixels wide at 100 dpi
    pdf.add_page()
    poster = tmp_path / "poster.pdf"
    pdf.output(str(poster))
    image = render_pdf_page(poster, 1, 100, max_side=MAX_VIEW_SIDE)
    assert max(image.size) <= MAX_VIEW_SIDE and min(image.size) > 1000


def test_the_viewer_remembers_a_bounded_number_of_results():
    from app.viewer import MAX_RESULTS

    registry = Registry()
    for turn in range(MAX_RESULTS + 5):
        registry.remember(f"ask-{turn}", {"citations": []}, {})
    assert len(registry.results) == MAX_RESULTS and "ask-0" not in registry.results
    assert f"ask-{MAX_RESULTS + 4}" in registry.results


def test_a_page_shown_again_is_not_drawn_again(tiny_workbench, cited_report, monkeypatch):
    import app.viewer

    drawn = []
    original = app.viewer.render_pdf_page
    monkeypatch.setattr(app.viewer, "render_pdf_page", lambda *args, **kw: drawn.append(args) or original(*args, **kw))
    for _ in range(3):
        open_reference(tiny_workbench, cited_report, "ask-0:c:1@1", None, "salt", "en")
    assert len(drawn) == 1
    for reference in ("ask-0:c:²", "ask-0:p:" + "9" * 5000):
        _html, shown = open_reference(tiny_workbench, cited_report, reference, None, "salt", "en")
        assert shown is None


def test_every_step_the_tasks_report_is_one_the_page_translates(tiny_workbench, pdfs):
    from app.steps import known, step_name
    from tasks.extract import spec_from_fields

    pages = [
        f"Chapter {n}. The harbour office {n} logged {n * 7} shipments. " + "Each was weighed. " * 30 for n in range(3)
    ]
    long = pdfs.make("harbour.pdf", pages)
    options = tiny_workbench.options(context_budget=700, max_new_tokens=8)
    runs = [
        tiny_workbench.summarize([long], options),
        tiny_workbench.ask([long], "How many shipments?", options),
        tiny_workbench.extract([long], spec_from_fields("office, shipments"), options),
        tiny_workbench.classify([long], "report, letter", options),
        tiny_workbench.custom([long], "List the offices.", options),
    ]
    steps = {message for run in runs for message in _steps_until_the_end(run)}
    assert any(step.startswith("Summarizing part") for step in steps)  # the map-reduce steps are among them
    assert {step for step in steps if not known(step)} == set()
    assert step_name("Summarizing part 2 of 9 (a.pdf, pages 3-4)", "de") != "Summarizing part 2 of 9 (a.pdf, pages 3-4)"
    assert step_name("Something new", "de") == "Something new"  # an unknown step is shown as written


def _steps_until_the_end(run) -> list[str]:
    """The Progress messages of a task, up to its result or its error (a JSON cut off at 16 tokens)."""
    from tasks.errors import UserError

    steps = []
    try:
        for event in run:
            if isinstance(event, Progress):
                steps.append(event.message)
    except UserError:
        pass
    return steps


def test_a_bad_setting_is_said_in_the_tabs_progress_panel_as_written(tiny_workbench, pdfs):
    from app.panels import frames

    tab = SimpleNamespace(workbench=tiny_workbench)
    settings = ("auto", "<lots>", 0.0, "auto", 0)
    [(frame, paths)] = list(frames(tab, [str(pdfs.report())], None, settings, {}, lambda paths, options: iter(())))
    assert frame.error == "max new tokens must be a number, not '<lots>'" and paths == []
    assert "&lt;lots&gt;" in frame.progress and "&amp;" not in frame.progress and 'role="alert"' in frame.progress


@pytest.mark.parametrize(("tokens", "budget", "fits"), [(300, 8192, True), (7900, 8192, False), (20000, 8192, False)])
def test_the_cards_budget_sentence_is_the_planners_in_english_and_translated_otherwise(tokens, budget, fits):
    from app.cards import _note
    from tasks.workbench import DocumentCard, fit_note

    note = fit_note(tokens, budget, fits) + ". report.pdf: page 2 read by OCR."
    card = DocumentCard("report.pdf", 3, 900, "en", tokens, budget, fits, {}, {}, {}, None, note, 1)
    assert _note(card, "en") == note
    german = _note(card, "de")
    assert german != note and german.endswith(". report.pdf: page 2 read by OCR.") and f"{tokens:,}" in german

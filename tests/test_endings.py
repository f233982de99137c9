"""Where an answer ends (tasks/endings.py) and what the tasks make of it (tasks/pipeline.py)."""

from __future__ import annotations

import pytest

from tasks.endings import EndingGuard
from tasks.events import Progress, TaskResult, TextDelta
from tasks.options import TaskOptions
from tests.fakes import FakeEngine


def guarded(text: str, questions: bool = True, step: int = 3) -> tuple[str, str | None]:
    guard = EndingGuard(questions=questions)
    for start in range(0, len(text), step):
        if guard.push(text[start : start + step]):
            break
    return guard.finish(), guard.reason


@pytest.mark.parametrize(
    "text",
    [
        "Tallinn (page 1).\nQuestion: Where is the office?\nAnswer: Lisbon",
        "Tallinn (page 1).\n\nQ: Where is the office?",
        "Tallinn (page 1).\nPlease answer the following question about the report.",
        "Tallinn (page 1).\n\nA) Tallinn\nB) Riga",
        "Tallinn (page 1).\nWhat is the capital of Estonia?\nTallinn.",
    ],
)
def test_an_invented_question_ends_the_answer_before_it(text):
    assert guarded(text) == ("Tallinn (page 1).", "question")


def test_a_question_line_is_kept_where_no_question_was_asked_and_in_the_first_line():
    summary = "The report asks one thing.\nWill prices rise?\nIt expects they will."
    assert guarded(summary, questions=False) == (summary, None)
    answer = "Does it say so? Yes: the office is in Tallinn (page 1)."
    assert guarded(answer) == (answer, None)


def test_a_repeated_sentence_ends_a_loop_and_is_said():
    text, reason = guarded("It is about Debian GNU/Linux. It covers packages. It is about Debian GNU/Linux. " * 5)
    assert (text, reason) == ("It is about Debian GNU/Linux. It covers packages.", "repetition")


def test_short_repeats_are_not_a_loop():
    text = "Yes. The total is 12. Yes. The date is 2 May."
    assert guarded(text) == (text, None)


def test_a_run_without_sentence_ends_is_cut_to_one_unit():
    text, reason = guarded("The email is " + "1234" * 40, step=5)
    assert reason == "repetition" and text.startswith("The email is 1234") and len(text) < 40


def test_a_table_rule_is_not_a_loop():
    text = "Line one\n|" + "---|" * 40
    assert guarded(text) == (text, None)


def _run(engine, task="ask"):
    from tasks.ask import ask
    from tasks.documents import Document, Page

    document = Document("report.txt", (Page(1, "Norvale Instruments is based in Tallinn. " * 3),))
    events = list(ask([document], "Where is Norvale based?", TaskOptions(max_new_tokens=64), engine))
    return events, events[-1]


def test_the_answer_stops_at_a_loop_and_the_result_says_so():
    engine = FakeEngine(reply="It is in Tallinn. " * 10)
    events, result = _run(engine)
    assert isinstance(result, TaskResult)
    assert result.text == "It is in Tallinn." and result.finish_reason == "repetition"
    assert any(isinstance(e, Progress) and "repeating" in e.message for e in events)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).count("Tallinn") <= 2


def test_an_empty_answer_is_asked_again_then_reported_as_empty():
    engine = FakeEngine(reply=" ")
    events, result = _run(engine)
    assert result.text == "" and result.finish_reason == "empty"
    assert len(engine.prompts) == 2  # asked once more
    assert any(isinstance(e, Progress) and "empty answer" in e.message for e in events)


@pytest.mark.parametrize(
    "text",
    [
        "Tallinn (page 1).\nQuestion: Where is the office?\nAnswer: Lisbon",
        "It is about Debian GNU/Linux. It covers packages. It is about Debian GNU/Linux. " * 3,
        "The email is " + "1234" * 40,
        "Tallinn (page 1).\nWhat is the capital of Estonia?\nTallinn.",
        "A plain answer that ends well.\nWith a second line.",
        "The board met on Monday. The budget was approved. **The budget was approved.**",
        'The board met on Monday. The budget was approved. "The budget was approved."',
        "Intro line here.\n     answer the following questions: 1",
    ],
)
@pytest.mark.parametrize("step", [1, 3, 7])
def test_what_is_shown_while_streaming_is_always_the_start_of_the_answer(text, step):
    guard, shown = EndingGuard(questions=True), ""
    for start in range(0, len(text), step):
        ended = guard.push(text[start : start + step])
        shown += guard.text[len(shown) : guard.settled()]
        assert guard.text.startswith(shown)
        if ended:
            break
    final = guard.finish()
    assert final.startswith(shown)

"""Task logic with a scripted engine: prompts, budget, strategies, events and results."""

import pytest

from tasks.ask import ask
from tasks.budget import CPU_DEFAULT_BUDGET, choose_strategy, context_budget
from tasks.classify import classify, parse_labels
from tasks.custom import MAX_PROMPT_CHARS, custom
from tasks.documents import Document, Page
from tasks.errors import BudgetError, InvalidRequest, ModelUnavailable
from tasks.events import Progress, TaskResult, TextDelta
from tasks.options import TaskOptions
from tasks.prompts import load_template
from tasks.summarize import summarize
from tasks.workbench import Workbench

DOC = Document("memo.txt", (Page(1, "The launch is on 9 May."), Page(2, "The budget is 40,000 euros.")),
               {"language": "en"})  # fmt: skip


def test_budget_follows_the_device():
    # context_budget(on_cpu, context_limit, ...): a GPU or a server gets the whole context
    assert context_budget(False, 131072) == 131072
    assert context_budget(False, 131072, memory_tokens=50_000) == 50_000  # as far as memory holds the KV cache
    assert context_budget(True, 131072) == CPU_DEFAULT_BUDGET
    assert context_budget(True, 131072, requested=32000) == 32000
    assert context_budget(False, 4096, requested=32000) == 4096  # never past the model's context
    with pytest.raises(InvalidRequest):
        context_budget(True, 131072, requested=10)


@pytest.mark.parametrize(
    ("task", "requested", "fits", "expected"),
    [
        ("summarize", "auto", True, "full"),
        ("summarize", "auto", False, "map-reduce"),
        ("ask", "auto", False, "retrieval"),
        ("extract", "auto", False, "retrieval"),
        ("classify", "auto", False, "retrieval"),
        ("custom", "auto", False, "retrieval"),
        ("custom", "auto", True, "full"),
        ("ask", "retrieval", True, "retrieval"),
        ("summarize", "map-reduce", True, "map-reduce"),
    ],
)
def test_strategy_choice(task, requested, fits, expected):
    assert choose_strategy(task, requested, fits) == expected


def test_a_strategy_that_makes_no_sense_for_the_task_is_refused():
    with pytest.raises(InvalidRequest, match="summarize cannot use the retrieval strategy"):
        choose_strategy("summarize", "retrieval", True)


def test_prompt_puts_the_document_first_and_the_question_last(fake_engine):
    events = list(ask([DOC], "When is the launch?", TaskOptions(), fake_engine))
    prompt = fake_engine.prompts[0]
    assert prompt.index("[Page 1]\nThe launch is on 9 May.") < prompt.index("[Page 2]")
    assert prompt.index("[Page 2]") < prompt.index("Question: When is the launch?")
    assert prompt.rstrip().endswith("Answer:")
    assert isinstance(events[-1], TaskResult) and events[-1].request == "When is the launch?"


def test_custom_instruction_comes_last_and_the_result_has_sources(fake_engine):
    events = list(custom([DOC], "List the launch dates\n in a table.", TaskOptions(), fake_engine))
    prompt = fake_engine.prompts[0]
    assert prompt.index("[Page 2]") < prompt.index("Instruction: List the launch dates in a table.")  # one line
    assert prompt.rstrip().endswith("Response:")
    assert isinstance(events[0], Progress) and "".join(e.text for e in events if isinstance(e, TextDelta))
    result = events[-1]
    assert isinstance(result, TaskResult) and result.task == "custom" and result.strategy == "full"
    assert result.text == fake_engine.reply and result.request == "List the launch dates in a table."
    assert result.sources and 1 in result.sources[0]["pages"] and result.quotes is not None  # "launch"


def test_custom_retrieves_passages_for_the_instruction_when_the_documents_are_long(fake_engine):
    filler = [Page(n, f"Filler page {n} about nothing much. " * 40) for n in range(1, 30)]
    long_doc = Document("long.txt", (*filler, Page(30, "The launch date is 9 May.")), {"language": "en"})
    options = TaskOptions(max_new_tokens=64, context_budget=600)
    result = list(custom([long_doc], "Give the launch date.", options, fake_engine))[-1]
    assert result.strategy == "retrieval"
    assert any(30 in source["pages"] for source in result.sources)


@pytest.mark.parametrize(
    ("prompt", "message"), [("   ", "type an instruction first"), ("x" * (MAX_PROMPT_CHARS + 1), "too long")]
)
def test_custom_needs_a_reasonable_instruction(fake_engine, prompt, message):
    with pytest.raises(InvalidRequest, match=message):
        list(custom([DOC], prompt, TaskOptions(), fake_engine))
    assert fake_engine.prompts == []


def test_custom_template_fills_the_instruction():
    filled = load_template("custom", "de").fill("instruction", prompt="Nenne die Termine.")
    assert filled.rstrip().endswith("Anweisung: Nenne die Termine.\nAntwort:")
    assert load_template("custom", "de").stop


def test_summarize_streams_then_reports(fake_engine):
    events = list(summarize([DOC], TaskOptions(max_new_tokens=64), fake_engine))
    assert isinstance(events[0], Progress) and "expected wait" in events[0].message
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    result = events[-1]
    assert "".join(deltas) == fake_engine.reply == result.text
    assert result.task == "summarize" and result.strategy == "full" and result.finish_reason == "stop"
    assert result.document.name == "memo.txt" and result.document.pages == 2 and result.document.tokens > 0
    assert result.usage["budget"] == CPU_DEFAULT_BUDGET
    assert result.pages_used == [{"document": "memo.txt", "pages": [1, 2]}]
    assert set(result.to_json()) >= {"task", "text", "strategy", "document", "timings", "language"}


def test_forcing_the_whole_document_past_the_budget_is_refused_not_cut(fake_engine):
    long_doc = Document("long.txt", (Page(1, "word " * 5000),))
    options = TaskOptions(max_new_tokens=256, context_budget=4096, strategy="full")
    with pytest.raises(BudgetError, match=r"longer than the context budget.*4,096.*Nothing was cut"):
        list(summarize([long_doc], options, fake_engine))
    assert fake_engine.prompts == []  # the model never saw a truncated document


def test_ask_needs_a_question(fake_engine):
    with pytest.raises(InvalidRequest, match="type a question"):
        list(ask([DOC], "   ", TaskOptions(), fake_engine))


@pytest.mark.parametrize(
    "options", [TaskOptions(max_new_tokens=0), TaskOptions(temperature=5.0), TaskOptions(language="xx")]
)
def test_options_are_checked(fake_engine, options):
    with pytest.raises(InvalidRequest):
        list(summarize([DOC], options, fake_engine))


def test_labels_are_parsed_and_checked():
    assert parse_labels(" invoice, contract ,invoice,, report ") == ["invoice", "contract", "report"]
    with pytest.raises(InvalidRequest, match="at least two labels"):
        parse_labels("invoice")


def test_classification_probabilities_sum_to_one(fake_engine):
    result = list(classify([DOC], "memo,invoice,contract", TaskOptions(), fake_engine))[-1]
    probabilities = [row["probability"] for row in result.labels]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert result.text == "memo"  # the fake scores shorter labels higher
    assert [row["label"] for row in result.labels] == ["memo", "invoice", "contract"]


def test_workbench_without_a_model_still_reads_documents(pdfs):
    workbench = Workbench(unavailable_reason="the hub is unreachable")
    card = workbench.card(workbench.read(pdfs.report()))
    assert (card.pages, card.tokens, card.fits, card.language) == (3, None, None, "en")
    assert "the hub is unreachable" in card.note
    with pytest.raises(ModelUnavailable, match="the hub is unreachable"):
        list(workbench.summarize(pdfs.report(), TaskOptions()))


def test_workbench_names_same_named_files_apart(tmp_path, fake_engine):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "notes.txt").write_text(f"Notes from folder {folder}.", encoding="utf-8")
    documents = Workbench(fake_engine).read([tmp_path / "a" / "notes.txt", tmp_path / "b" / "notes.txt"])
    assert [d.name for d in documents] == ["notes.txt", "notes.txt (2)"]


def test_workbench_card_counts_tokens_and_plans_each_task(tiny_workbench, pdfs, tmp_path):
    card = tiny_workbench.card(tiny_workbench.read(pdfs.report()))
    assert card.tokens > 50 and card.budget == CPU_DEFAULT_BUDGET and card.fits
    assert card.strategies == {"summarize": "full", "ask": "full", "extract": "full", "classify": "full",
                               "custom": "full"}  # fmt: skip
    assert card.expected_wait
    longer = tmp_path / "minutes.txt"
    longer.write_text("The committee approved invoice 4417 for the Berlin warehouse.\n\n" * 120, encoding="utf-8")
    small = tiny_workbench.card(tiny_workbench.read(longer), tiny_workbench.options(context_budget=1024))
    assert not small.fits and small.strategies["summarize"] == "map-reduce" and small.strategies["ask"] == "retrieval"
    assert small.strategies["custom"] == "retrieval" and small.parts["summarize"] > 1 and small.parts["ask"] == 1
    no_room = tiny_workbench.card(
        tiny_workbench.read(pdfs.report()), tiny_workbench.options(context_budget=512, max_new_tokens=500)
    )
    assert no_room.strategies == {"classify": "full"}  # it writes no answer: the labels are scored
    assert "too small to summarize this document in parts" in no_room.refused["summarize"]
    assert "leaves no room for excerpts" in no_room.refused["ask"] and no_room.expected_wait.startswith("none:")


def test_real_summary_of_a_real_pdf(tiny_workbench, pdfs):
    events = list(tiny_workbench.summarize(pdfs.report(), TaskOptions(max_new_tokens=24)))
    result = events[-1]
    assert isinstance(result, TaskResult)
    assert result.text and result.model == "tiny-random"
    assert result.usage["generated_tokens"] <= 24
    assert result.timings["read_seconds"] > 0

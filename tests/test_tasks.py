"""Task logic: prompts, the budget, events and results (fake engine), and one real run."""

import pytest

from tasks.ask import ask
from tasks.budget import CPU_DEFAULT_BUDGET, context_budget
from tasks.documents import Document, Page, load_document
from tasks.errors import BudgetError, InvalidRequest, ModelUnavailable
from tasks.events import Progress, TaskResult, TextDelta
from tasks.pipeline import GenerationOptions
from tasks.prompts import load_template
from tasks.summarize import summarize
from tasks.workbench import Workbench

DOC = Document("memo.txt", (Page(1, "The launch is on 9 May."), Page(2, "The budget is 40,000 euros.")))


def test_budget_follows_the_device():
    assert context_budget("cuda", 131072) == 131072
    assert context_budget("cpu", 131072) == CPU_DEFAULT_BUDGET
    assert context_budget("cpu", 131072, requested=32000) == 32000
    assert context_budget("cuda", 4096, requested=32000) == 4096  # never past the model's context
    with pytest.raises(InvalidRequest):
        context_budget("cpu", 131072, requested=10)


def test_prompt_puts_the_document_first_and_the_task_last(fake_engine):
    events = list(ask(DOC, "When is the launch?", GenerationOptions(), fake_engine))
    prompt = fake_engine.prompts[0]
    assert prompt.index("[Page 1]\nThe launch is on 9 May.") < prompt.index("[Page 2]")
    assert prompt.index("[Page 2]") < prompt.index("Question: When is the launch?")
    assert prompt.rstrip().endswith("Answer:")
    assert isinstance(events[-1], TaskResult)


def test_summarize_streams_then_reports(fake_engine):
    events = list(summarize(DOC, GenerationOptions(max_new_tokens=64), fake_engine))
    assert isinstance(events[0], Progress)
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    result = events[-1]
    assert "".join(deltas) == fake_engine.reply == result.text
    assert result.task == "summarize" and result.strategy == "full" and result.finish_reason == "stop"
    assert result.document.name == "memo.txt" and result.document.pages == 2 and result.document.tokens > 0
    assert result.usage["budget"] == CPU_DEFAULT_BUDGET
    assert {"prefill_seconds", "decode_seconds", "total_seconds"} <= set(result.timings)
    assert set(result.to_json()) >= {"task", "text", "strategy", "document", "timings"}


def test_a_document_over_the_budget_is_refused_not_cut(fake_engine):
    long_doc = Document("long.txt", (Page(1, "word " * 5000),))
    options = GenerationOptions(max_new_tokens=256, context_budget=4096)
    with pytest.raises(BudgetError, match=r"longer than the context budget.*4,096.*Nothing was cut"):
        list(summarize(long_doc, options, fake_engine))
    assert fake_engine.prompts == []  # the model never saw a truncated document


def test_ask_needs_a_question(fake_engine):
    with pytest.raises(InvalidRequest, match="type a question"):
        list(ask(DOC, "   ", GenerationOptions(), fake_engine))


@pytest.mark.parametrize("options", [GenerationOptions(max_new_tokens=0), GenerationOptions(temperature=5.0)])
def test_options_are_checked(fake_engine, options):
    with pytest.raises(InvalidRequest):
        list(summarize(DOC, options, fake_engine))


def test_templates_are_data_with_stop_strings():
    for task in ("summarize", "ask"):
        template = load_template(task, "en")
        assert "{document}" in template.prefix and template.stop
        assert "{document}" not in template.instruction  # the document stays in the reusable prefix


def test_workbench_without_a_model_still_reads_documents(pdfs):
    workbench = Workbench(unavailable_reason="the hub is unreachable")
    card = workbench.card(load_document(pdfs.report()))
    assert (card.pages, card.tokens, card.fits) == (3, None, None)
    assert "the hub is unreachable" in card.note
    with pytest.raises(ModelUnavailable, match="the hub is unreachable"):
        list(workbench.summarize(pdfs.report(), GenerationOptions()))


def test_workbench_card_counts_tokens_against_the_budget(tiny_workbench, pdfs):
    card = tiny_workbench.card(load_document(pdfs.report()))
    assert card.tokens > 50 and card.budget == CPU_DEFAULT_BUDGET and card.fits
    small = Workbench(tiny_workbench.engine, context_budget=256)
    assert not small.card(load_document(pdfs.report()), answer_tokens=200).fits


def test_real_summary_of_a_real_pdf(tiny_workbench, pdfs):
    events = list(tiny_workbench.summarize(pdfs.report(), GenerationOptions(max_new_tokens=24)))
    result = events[-1]
    assert isinstance(result, TaskResult)
    assert result.text and result.model == "tiny-random"
    assert result.usage["generated_tokens"] <= 24
    assert result.timings["read_seconds"] > 0

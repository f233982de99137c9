"""The document card and the tasks plan with one function: what the card says each task will do
(its strategy, its parts, or why it is refused) is what the task then does."""

import itertools

import pytest

from tasks.ask import ask
from tasks.classify import classify
from tasks.custom import custom
from tasks.documents import Document, Page
from tasks.errors import InvalidRequest, UserError
from tasks.events import TaskResult
from tasks.extract import extract, spec_from_fields
from tasks.options import TaskOptions
from tasks.planning import LABEL_TOKENS, REQUEST_TOKENS, plan_task
from tasks.summarize import summarize
from tasks.workbench import Workbench
from tests.fakes import FakeEngine

SENTENCE = "The committee approved invoice {n} for the Berlin warehouse on {n} May. "
SHORT = Document("memo.txt", (Page(1, "The launch is on 9 May."), Page(2, "The budget is 40,000 euros.")),
                 {"language": "en"})  # fmt: skip
LONG = Document("ledger.txt", tuple(Page(n, SENTENCE.format(n=n) * 30) for n in range(1, 41)), {"language": "en"})
TWO = [SHORT, Document("minutes.txt", tuple(Page(n, SENTENCE.format(n=n) * 12) for n in range(1, 9)), {})]
DOCUMENTS = {"short": [SHORT], "long": [LONG], "two": TWO}
EXTRACTED = '{"date": null, "amount": null}'  # the fake's reply for extraction: JSON for the fields


def run(task: str, documents: list[Document], options: TaskOptions, engine: FakeEngine) -> TaskResult:
    engine.reply = EXTRACTED if task == "extract" else "A short scripted answer."
    events = {
        "summarize": lambda: summarize(documents, options, engine),
        "ask": lambda: ask(documents, "When did the committee approve the invoice?", options, engine),
        "extract": lambda: extract(documents, spec_from_fields("date,amount"), options, engine),
        "classify": lambda: classify(documents, "memo,invoice,contract", options, engine),
        "custom": lambda: custom(documents, "List every invoice number.", options, engine),
    }[task]()
    return list(events)[-1]


GRID = list(
    itertools.product(DOCUMENTS, (512, 1024, 3000, 131072), ("auto", "full", "map-reduce", "retrieval"), (64, 400))
)


@pytest.mark.parametrize(("documents", "budget", "strategy", "answer"), GRID)
def test_the_card_says_what_each_task_then_does(documents, budget, strategy, answer):
    engine = FakeEngine()
    documents = DOCUMENTS[documents]
    options = TaskOptions(max_new_tokens=answer, context_budget=budget, strategy=strategy)
    card = Workbench(engine).card(documents, options)
    assert set(card.strategies) | set(card.refused) == {"summarize", "ask", "extract", "classify", "custom"}
    for task, reason in card.refused.items():
        with pytest.raises(UserError) as refused:
            run(task, documents, options, engine)
        assert str(refused.value) == reason, task
    for task, planned in card.strategies.items():
        engine.prompts.clear()
        result = run(task, documents, options, engine)
        assert result.strategy == planned, task
        if planned == "map-reduce":  # each section once, then at least one merge
            assert len(result.sections) == card.parts[task] >= 1
            assert len(engine.prompts) > card.parts[task]
        else:
            assert len(engine.prompts) == card.parts[task] == 1, task


def test_the_grid_covers_every_outcome():
    """The grid above is only worth something if it meets every strategy and refusals."""
    seen = set()
    for documents, budget, strategy in itertools.product(DOCUMENTS.values(), (512, 3000), ("auto", "full")):
        card = Workbench(FakeEngine()).card(documents, TaskOptions(max_new_tokens=400, context_budget=budget,
                                                                    strategy=strategy))  # fmt: skip
        seen |= set(card.strategies.values()) | ({"refused"} if card.refused else set())
    assert seen == {"full", "map-reduce", "retrieval", "refused"}


def test_a_request_longer_than_the_room_kept_for_it_is_refused_whatever_the_document():
    engine = FakeEngine()
    question = " ".join(["w"] * (REQUEST_TOKENS + 1))  # under the 2,000 characters, over the tokens
    with pytest.raises(InvalidRequest, match=f"the question is too long: {REQUEST_TOKENS + 1:,} tokens, at most 512"):
        list(ask([SHORT], question, TaskOptions(), engine))
    small = TaskOptions(context_budget=1024)  # an eighth of the budget
    with pytest.raises(InvalidRequest, match="the question is too long: 200 tokens, at most 128"):
        list(ask([SHORT], " ".join(["w"] * 200), small, engine))
    assert not engine.prompts


def test_a_label_longer_than_classification_scores_is_refused():
    label = " ".join(["long"] * (LABEL_TOKENS + 1))
    with pytest.raises(InvalidRequest, match=f"a label may have at most {LABEL_TOKENS} tokens"):
        list(classify([SHORT], ["memo", label], TaskOptions(), FakeEngine()))


def test_an_invalid_strategy_is_refused_on_the_card_as_by_the_task():
    engine = FakeEngine()
    card = Workbench(engine).card([SHORT], TaskOptions(strategy="map-reduce"))
    assert card.strategies == {"summarize": "map-reduce"}
    assert card.refused["ask"] == "ask cannot use the map-reduce strategy; use full or retrieval"
    assert card.expected_wait and "refused" not in card.expected_wait
    wrong = Workbench(engine).card([SHORT], TaskOptions(strategy="retrieval"))
    assert wrong.expected_wait.startswith("none: the summary would be refused: summarize cannot use the retrieval")


def test_the_card_refuses_options_every_task_would_refuse():
    with pytest.raises(InvalidRequest, match="max new tokens must be between 1 and"):
        Workbench(FakeEngine()).card([SHORT], TaskOptions(max_new_tokens=0))
    with pytest.raises(InvalidRequest, match="unsupported language 'xx'"):
        Workbench(FakeEngine()).card([SHORT], TaskOptions(language="xx"))


def test_a_document_that_fits_a_summary_but_not_a_question_says_why():
    engine = FakeEngine()
    words = Document("notes.txt", (Page(1, "word " * 7300),), {"language": "en"})
    card = Workbench(engine).card([words], TaskOptions(max_new_tokens=512))  # 8,192: the CPU's default budget
    assert card.fits and card.strategies["summarize"] == "full" and card.strategies["ask"] == "retrieval"
    assert "ask, extract, custom keep 512 tokens for the request, so they use the best-matching passages" in card.note
    assert list(ask([words], "What is the word?", TaskOptions(max_new_tokens=512), engine))[-1].strategy == "retrieval"


def test_the_work_of_a_plan_is_what_its_generations_read_and_write():
    engine = FakeEngine()
    options = TaskOptions(max_new_tokens=64, context_budget=2048)
    retrieval = plan_task("ask", [LONG], options, engine)
    assert retrieval.strategy == "retrieval" and retrieval.work() == (2048 - 64, 64)
    summary = plan_task("summarize", [LONG], options, engine)
    partials = summary.parts * summary.map_tokens
    assert summary.work() == (summary.document_tokens + partials, partials + 64)

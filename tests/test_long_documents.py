"""Documents far over the budget, on the tiny-random model: map-reduce summaries and retrieval
answers with valid page numbers. Nothing is cut silently."""

import pytest

from tasks.events import Progress, TaskResult
from tasks.planning import MIN_MAP_TOKENS

PAGES = 40
FACT_PAGE = 27


def page_text(number: int) -> str:
    fact = "The vault combination is 4417-9921, kept by Ingrid Halvorsen. " if number == FACT_PAGE else ""
    return (
        f"Section {number}. {fact}The committee reviewed shipment batch {number * 13} and approved "
        f"invoice {number * 101} for the warehouse in district {number % 7}. Staff counted {number * 3} pallets."
    )


@pytest.fixture(scope="module")
def long_pdf(tmp_path_factory):
    from tests.pdfs import PdfFactory

    return PdfFactory(tmp_path_factory.mktemp("long")).make("ledger.pdf", [page_text(n) for n in range(1, PAGES + 1)])


@pytest.fixture
def workbench(tiny_engine):
    from tasks.workbench import Workbench

    return Workbench(tiny_engine, context_budget=1024)


def test_the_document_is_far_over_the_budget(workbench, long_pdf):
    card = workbench.card(workbench.read(long_pdf))
    assert card.tokens > 3 * card.budget
    assert card.strategies == {"summarize": "map-reduce", "ask": "retrieval", "extract": "retrieval",
                               "classify": "retrieval", "custom": "retrieval"}  # fmt: skip


def test_map_reduce_summary_covers_every_page(workbench, long_pdf):
    events = list(workbench.summarize(long_pdf, workbench.options(max_new_tokens=48)))
    result = events[-1]
    assert isinstance(result, TaskResult) and result.strategy == "map-reduce"
    covered = {page for section in result.sections for page in section["pages"]}
    assert covered == set(range(1, PAGES + 1))
    assert len(result.sections) > 3
    assert sum(isinstance(e, Progress) and e.message.startswith("Summarizing part") for e in events) == len(
        result.sections
    )
    # The usage is every call's: each part read once, each partial summary no longer than asked.
    assert result.usage["prompt_tokens"] >= result.document.tokens
    assert result.usage["generated_tokens"] <= 48 * (len(result.sections) + 1)


def test_map_reduce_merges_level_by_level_when_partials_do_not_fit(workbench, long_pdf):
    # Sampled: a random model's greedy text loops, and the loop would be cut short (tasks/endings.py).
    events = list(workbench.summarize(long_pdf, workbench.options(max_new_tokens=300, temperature=1.0)))
    messages = [e.message for e in events if isinstance(e, Progress)]
    assert any("level 1" in message for message in messages)
    assert events[-1].strategy == "map-reduce"


def test_retrieval_answer_cites_valid_pages_and_finds_the_fact(workbench, long_pdf):
    events = list(workbench.ask(long_pdf, "What is the vault combination?", workbench.options(max_new_tokens=32)))
    result = events[-1]
    assert result.strategy == "retrieval"
    assert result.usage["prompt_tokens"] + 32 <= 1024
    sources = result.sources
    assert sources and all(1 <= page <= PAGES for source in sources for page in source["pages"])
    assert FACT_PAGE in sources[0]["pages"] and "4417-9921" in sources[0]["text"]
    used = result.pages_used[0]
    assert used["document"] == "ledger.pdf" and FACT_PAGE in used["pages"] and len(used["pages"]) < PAGES


def test_extraction_on_a_long_document_uses_retrieval(workbench, long_pdf):
    from tasks.extract import spec_from_fields

    spec = spec_from_fields("vault combination, keeper")
    result = list(workbench.extract(long_pdf, spec, workbench.options(max_new_tokens=200)))[-1]
    assert result.strategy == "retrieval" and set(result.extraction.data) == {"vault combination", "keeper"}
    assert any(FACT_PAGE in source["pages"] for source in result.sources)


class RecordingEngine:
    """The tiny engine, recording the size of every prompt it is asked to read."""

    def __init__(self, engine):
        self._engine = engine
        self.requests: list[tuple[int, int]] = []  # (prompt tokens, max new tokens)

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def stream(self, prompt, *, prefix="", max_new_tokens, **options):
        size = self._engine.count_tokens(prefix) + self._engine.count_tokens(prompt)
        self.requests.append((size, max_new_tokens))
        return self._engine.stream(prompt, prefix=prefix, max_new_tokens=max_new_tokens, **options)


@pytest.fixture(scope="module")
def choppy_pdf(tmp_path_factory):
    """Many one-number paragraphs: the markers and breaks between them are a large share."""
    from tests.pdfs import PdfFactory

    pages = ["\n\n".join(str(n * 100 + k) for k in range(30)) for n in range(1, 21)]
    return PdfFactory(tmp_path_factory.mktemp("choppy")).make("numbers.pdf", pages)


@pytest.mark.parametrize("task", ["summarize", "ask"])
def test_every_prompt_stays_within_the_budget(task, tiny_engine, choppy_pdf):
    from tasks.workbench import Workbench

    engine = RecordingEngine(tiny_engine)
    workbench = Workbench(engine, context_budget=700)
    options = workbench.options(max_new_tokens=64)
    events = (
        workbench.summarize(choppy_pdf, options)
        if task == "summarize"
        else workbench.ask(choppy_pdf, "Which numbers start with 7?", options)
    )
    assert list(events)[-1].strategy in ("map-reduce", "retrieval")
    assert engine.requests and all(size + answer <= 700 for size, answer in engine.requests)


def test_an_answer_too_long_for_the_budget_is_refused_clearly(workbench, long_pdf):
    from tasks.errors import BudgetError

    with pytest.raises(BudgetError, match="no room for excerpts"):
        list(workbench.ask(long_pdf, "What is the vault combination?", workbench.options(max_new_tokens=900)))


def test_a_short_summary_of_a_long_document(workbench, long_pdf):
    result = list(workbench.summarize(long_pdf, workbench.options(max_new_tokens=16)))[-1]
    assert result.strategy == "map-reduce" and workbench.engine.count_tokens(result.text) <= 17
    # The parts are as short as the summary asked for, or as short as a part may be.
    assert result.usage["generated_tokens"] <= 16 + MIN_MAP_TOKENS * len(result.sections)


def test_stopping_during_map_reduce_returns_no_hidden_text(workbench, long_pdf):
    import threading

    cancel = threading.Event()
    events = []
    for event in workbench.summarize(long_pdf, workbench.options(max_new_tokens=48, cancel=cancel)):
        events.append(event)
        if isinstance(event, Progress) and "part 2" in event.message:
            cancel.set()
    result = events[-1]
    assert result.finish_reason == "cancelled" and result.text == ""
    assert len(result.sections) == 1  # the part finished before the stop is kept

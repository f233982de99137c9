"""The document cards: what was loaded (pages, language, tokens against the budget) and what each
task will do with it, as HTML (text from documents escaped) and as JSON."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from html import escape

from app.i18n import strategy_name, tables, text
from app.inputs import file_list, user_errors
from app.steps import wait_words
from tasks.errors import InvalidRequest, UserError
from tasks.options import TaskOptions
from tasks.workbench import MAX_DOCUMENTS, DocumentCard, Workbench, fit_note


def describe_documents(
    workbench: Workbench,
    documents: list[str] | None,
    options: TaskOptions,
    password: str | None = None,
    progress: Callable[[str], None] | None = None,
    language: str = "en",
) -> tuple[str, dict, list[str]]:
    """One card per document (name, pages, language, tokens, a gauge of its tokens against the
    budget) and, for several, a card for them together; each with the strategy every task will
    use. A file that cannot be read gets an error chip instead of a card; the others still load.
    Scanned pages are read by OCR here (saying how far it got through `progress`), once per
    session: the tasks then find them in the workbench's cache. Returns (HTML, JSON, the paths
    that loaded)."""
    if not documents:
        return empty_cards(language), {}, []
    with user_errors():
        paths = file_list(documents)
        if len(paths) > MAX_DOCUMENTS:
            raise InvalidRequest(f"load at most {MAX_DOCUMENTS} documents at a time")
    names = workbench.document_names(paths)
    loaded, usable, errors = [], [], []
    for path, name in zip(paths, names, strict=True):
        try:
            document = workbench.read([path], password, cache_salt=options.cache_salt, progress=progress)[0]
        except UserError as exc:
            errors.append({"file": name, "message": str(exc)})
            continue
        loaded.append(dataclasses.replace(document, name=name))
        usable.append(path)
    chips = "".join(_error_chip(error) for error in errors)
    if not loaded:
        return f'<div class="doc-cards">{chips}</div>', {"errors": errors, "documents": []}, []
    with user_errors():
        cards = [workbench.card([document], options) for document in loaded]
        together = workbench.card(loaded, options) if len(loaded) > 1 else cards[0]
    html = "".join(_card_html(card, language) for card in cards) + chips
    if len(loaded) > 1:
        html += _card_html(together, language, title=text("cards.together", language, count=len(loaded)))
    html += _strategies_html(together, language)
    data = {**together.to_json(), "documents": [card.to_json() for card in cards]}
    if errors:
        data["errors"] = errors
    return f'<div class="doc-cards">{html}</div>', data, usable


def _error_chip(error: dict[str, str]) -> str:
    return (f'<div class="doc-chip error" role="alert" dir="auto"><span class="doc-name">{escape(error["file"])}</span>'
            f'<span class="doc-note">{escape(error["message"])}</span></div>')  # fmt: skip


def empty_cards(language: str = "en") -> str:
    return f'<div class="doc-cards empty" dir="auto">{escape(text("uploads.none", language))}</div>'


EMPTY_CARDS = empty_cards()


def _card_html(card: DocumentCard, language: str, title: str | None = None) -> str:
    pages = (
        text("cards.one_page", language) if card.pages == 1 else text("cards.pages", language, count=f"{card.pages:,}")
    )
    tokens = (text("cards.tokens_unknown", language) if card.tokens is None
              else text("cards.tokens", language, count=f"{card.tokens:,}"))  # fmt: skip
    facts = [pages, text("cards.characters", language, count=f"{card.characters:,}"),
             text("cards.language", language, language=card.language or "?"), tokens]  # fmt: skip
    if card.ocr_pages:
        count = text("cards.one_page", language) if card.ocr_pages == 1 else text(
            "cards.pages", language, count=f"{card.ocr_pages:,}")  # fmt: skip
        facts.append(text("cards.ocr_pages", language, count=count))
    return (
        f'<div class="doc-card" dir="auto"><div class="doc-name">{escape(title or card.name)}</div>'
        f'<div class="doc-facts">{escape(" · ".join(facts))}</div>{_gauge_html(card)}'
        f'<div class="doc-note">{escape(_note(card, language))}</div></div>'
    )


def _note(card: DocumentCard, language: str) -> str:
    """The card's note, its first sentence (tokens against the budget) in `language`; what follows
    it (requests that need room, how pages were read) as the planner wrote it."""
    if card.tokens is None or not card.budget or card.fits is None:
        return card.note
    english = fit_note(card.tokens, card.budget, card.fits)
    if language == "en" or not card.note.startswith(english):
        return card.note
    share = card.tokens / card.budget
    values = {"tokens": f"{card.tokens:,}", "budget": f"{card.budget:,}", "share": f"{share:.0%}"}
    if card.fits:
        fit = text("cards.fits", language, **values)
    elif share < 1:
        fit = text("cards.near", language, **values)
    else:
        fit = text("cards.over", language, ratio=f"{share:.1f}", **values)
    return fit + card.note[len(english) :]


def _gauge_html(card: DocumentCard) -> str:
    if card.tokens is None or not card.budget:
        return ""
    share = card.tokens / card.budget
    state = "fits" if share <= 1 else "over"
    width = min(100.0, share * 100)
    label = f"{card.tokens:,} / {card.budget:,} ({share:.0%})"
    return (
        f'<div class="gauge {state}" role="meter" aria-valuenow="{card.tokens}" aria-valuemax="{card.budget}" '
        f'title="{escape(label)}"><div class="gauge-fill" style="width:{width:.1f}%"></div></div>'
    )  # the card's note under it says the same in words


def _strategies_html(card: DocumentCard, language: str) -> str:
    if not card.strategies and not card.refused:
        return ""
    rows = "".join(
        f"<li><b>{escape(_task_name(task, language))}</b>: {escape(_plan_text(card, task, language))}</li>"
        for task in [*card.strategies, *card.refused]
    )
    wait = text("cards.wait", language, wait=wait_words(card.expected_wait or "?", language))
    return (f'<div class="doc-card strategies" dir="auto"><div class="doc-name">{escape(text("cards.plan", language))}'
            f'</div><ul>{rows}</ul><div class="doc-note">{escape(wait)}</div></div>')  # fmt: skip


def _plan_text(card: DocumentCard, task: str, language: str) -> str:
    """What the card says `task` will do: its strategy (and parts), or why it would be refused."""
    if task in card.refused:
        return text("cards.refused", language, reason=card.refused[task])
    name = strategy_name(card.strategies[task], language)
    parts = card.parts[task]
    return text("cards.parts", language, strategy=name, count=parts) if parts > 1 else name


def _task_name(task: str, language: str) -> str:
    return text(f"tab.{task}", language) if f"tab.{task}" in tables()["en"] else task

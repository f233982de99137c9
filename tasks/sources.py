"""Sources a person can check: the passages an answer drew on, with 1-based page numbers, and the
quotes in an answer, each shown as a quote only when it is really in the document text."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from tasks.chunking import chunk_documents
from tasks.documents import Document
from tasks.events import Quote, Source
from tasks.interfaces import TokenCounter
from tasks.retrieval import ScoredChunk, rank

_QUOTED = re.compile(r"[\"“„«「『]([^\"“”„«»「」『』]{8,500})[\"”“»」』]")
_MAX_SOURCE_CHARS = 1200
# Each quote is looked for in every page: without a cap, an answer of thousands of short quotes
# (a model can be talked into writing them) against a 50 MB document would take minutes.
MAX_QUOTES = 50


def source_list(chunks: Sequence[ScoredChunk]) -> list[Source]:
    """JSON-ready sources, most relevant first: document, pages (1-based), text and retrieval score."""
    ordered = sorted(chunks, key=lambda scored: -scored.score)
    return [
        {
            "document": scored.chunk.document,
            "pages": list(scored.chunk.pages),
            "label": f"{scored.chunk.document}, {scored.chunk.page_label}",
            "text": _shorten(scored.chunk.text),
            "score": round(scored.score, 3),
        }
        for scored in ordered
    ]


def related_passages(
    documents: Sequence[Document], query: str, counter: TokenCounter, top: int = 3
) -> list[ScoredChunk]:
    """The passages most related to `query` (when the model read everything, these show where
    to look)."""
    return [scored for scored in rank(chunk_documents(documents, counter), query)[:top] if scored.score > 0]


def verify_quotes(answer: str, documents: Sequence[Document]) -> list[Quote]:
    """The quoted spans in `answer` (8 to 500 characters between quotation marks), with where each
    is found: the first page that holds it, compared without case, with runs of whitespace as one
    space and curly apostrophes as straight ones. `verified` is False when it is in no document
    (then it must not be presented as a quote). Only the first MAX_QUOTES are checked and listed."""
    matches = list(itertools.islice(_QUOTED.finditer(answer), MAX_QUOTES))
    if not matches:
        return []
    pages = [(d.name, p.number, _normalize(p.text)) for d in documents for p in d.pages]
    quotes = []
    for match in matches:
        span = match.group(1).strip()
        needle = _normalize(span)
        found = next(((name, number) for name, number, text in pages if needle and needle in text), None)
        quotes.append(
            {"text": span, "verified": found is not None, "document": found and found[0], "page": found and found[1]}
        )
    return quotes


def _normalize(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'")
    return " ".join(text.casefold().split())


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SOURCE_CHARS else text[: _MAX_SOURCE_CHARS - 1].rstrip() + "…"

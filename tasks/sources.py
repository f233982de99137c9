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
from tasks.retrieval import ScoredChunk, documents_language, rank

_QUOTED = re.compile(r"[\"“„«「『]([^\"“”„«»「」『』]{8,500})[\"”“»」』]")
_MAX_SOURCE_CHARS = 1200
# Each quote is looked for in every page: without a cap, an answer of thousands of short quotes
# (a model can be talked into writing them) against a 50 MB document would take minutes.
MAX_QUOTES = 50


OCR_MARK = ", read by OCR"


def source_list(chunks: Sequence[ScoredChunk], documents: Sequence[Document]) -> list[Source]:
    """JSON-ready sources, most relevant first: document, pages (1-based), text, retrieval score,
    and whether some of its pages were read by OCR (said in its label too)."""
    ocr = _ocr_pages(documents)
    sources: list[Source] = []
    for scored in sorted(chunks, key=lambda scored: -scored.score):
        chunk = scored.chunk
        from_ocr = any((chunk.document, page) in ocr for page in chunk.pages)
        sources.append({
            "document": chunk.document,
            "pages": list(chunk.pages),
            "label": f"{chunk.document}, {chunk.page_label}" + (OCR_MARK if from_ocr else ""),
            "text": _shorten(chunk.text),
            "score": round(scored.score, 3),
            "ocr": from_ocr,
        })  # fmt: skip
    return sources


def _ocr_pages(documents: Sequence[Document]) -> set[tuple[str, int]]:
    return {(document.name, number) for document in documents for number in document.ocr_pages}


def related_passages(
    documents: Sequence[Document], query: str, counter: TokenCounter, top: int = 3
) -> list[ScoredChunk]:
    """The passages most related to `query` (when the model read everything, these show where
    to look)."""
    ranked = rank(chunk_documents(documents, counter), query, documents_language(documents))
    return [scored for scored in ranked[:top] if scored.score > 0]


def verify_quotes(answer: str, documents: Sequence[Document]) -> list[Quote]:
    """The quoted spans in `answer` (8 to 500 characters between quotation marks), with where each
    is found: the first page that holds it, compared without case, with runs of whitespace as one
    space and curly apostrophes as straight ones. `verified` is False when it is in no document
    (then it must not be presented as a quote). Only the first MAX_QUOTES are checked and listed."""
    matches = list(itertools.islice(_QUOTED.finditer(answer), MAX_QUOTES))
    if not matches:
        return []
    pages = [(d.name, p.number, p.ocr, _normalize(p.text)) for d in documents for p in d.pages]
    quotes: list[Quote] = []
    for match in matches:
        span = match.group(1).strip()
        needle = _normalize(span)
        found = next((page for page in pages if needle and needle in page[3]), None)
        quotes.append({"text": span, "verified": found is not None, "document": found and found[0],
                       "page": found and found[1], "ocr": bool(found and found[2])})  # fmt: skip
    return quotes


def _normalize(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'")
    return " ".join(text.casefold().split())


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SOURCE_CHARS else text[: _MAX_SOURCE_CHARS - 1].rstrip() + "…"

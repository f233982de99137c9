"""Split documents into token-budgeted, page-aware chunks.

Paragraphs are packed into chunks of at most `max_tokens` tokens; a chunk may run across a page
break and then knows every page it covers. Paragraphs longer than a chunk are split at sentence
ends, and sentences longer than a chunk at word boundaries. Chunks carry their document's name,
so retrieval and citations work across several documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tasks.documents import Document
from tasks.interfaces import TokenCounter

DEFAULT_CHUNK_TOKENS = 384
CHUNK_HEADER_TOKENS = 12  # what a rendered excerpt adds around a chunk: its page marker, breaks, [...]
_JOINER = "\n\n"
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")


@dataclass(frozen=True)
class Chunk:
    document: str  # file name
    index: int  # position within its document
    pages: tuple[int, ...]  # 1-based pages covered, in order
    text: str
    tokens: int

    @property
    def page_label(self) -> str:
        first, last = self.pages[0], self.pages[-1]
        return f"page {first}" if first == last else f"pages {first}-{last}"


def chunk_documents(
    documents: Sequence[Document], counter: TokenCounter, max_tokens: int = DEFAULT_CHUNK_TOKENS
) -> list[Chunk]:
    return [chunk for document in documents for chunk in chunk_document(document, counter, max_tokens)]


def chunk_document(document: Document, counter: TokenCounter, max_tokens: int = DEFAULT_CHUNK_TOKENS) -> list[Chunk]:
    """Pack the document's paragraphs into chunks of at most `max_tokens` tokens, in order."""
    chunks: list[Chunk] = []
    texts: list[str] = []
    pages: list[int] = []
    used = 0
    joiner = counter.count_tokens(_JOINER)
    for page, piece, tokens in _pieces(document, counter, max_tokens):
        if texts and used + joiner + tokens > max_tokens:
            chunks.append(_chunk(document.name, len(chunks), pages, texts, counter))
            texts, pages, used = [], [], 0
        used += tokens + (joiner if texts else 0)
        texts.append(piece)
        if page not in pages:
            pages.append(page)
    if texts:
        chunks.append(_chunk(document.name, len(chunks), pages, texts, counter))
    return chunks


def _chunk(name: str, index: int, pages: list[int], texts: list[str], counter: TokenCounter) -> Chunk:
    text = _JOINER.join(texts)
    return Chunk(name, index, tuple(pages), text, counter.count_tokens(text))


def _pieces(document: Document, counter: TokenCounter, max_tokens: int) -> Iterator[tuple[int, str, int]]:
    """(page number, text, tokens) for every paragraph, split further where it is too long."""
    for page in document.pages:
        for paragraph in re.split(r"\n\s*\n", page.text):
            paragraph = paragraph.strip()
            if paragraph:
                for piece in _fit(paragraph, counter, max_tokens):
                    yield page.number, piece, counter.count_tokens(piece)


def _fit(text: str, counter: TokenCounter, max_tokens: int) -> list[str]:
    if counter.count_tokens(text) <= max_tokens:
        return [text]
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) > 1:
        return _pack(sentences, counter, max_tokens, " ")
    words = text.split(" ")
    if len(words) > 1:
        return _pack(words, counter, max_tokens, " ")
    middle = len(text) // 2  # no spaces at all (e.g. Chinese without punctuation): halve it
    return _fit(text[:middle], counter, max_tokens) + _fit(text[middle:], counter, max_tokens)


def _pack(parts: Sequence[str], counter: TokenCounter, max_tokens: int, joiner: str) -> list[str]:
    """Greedily join `parts` into pieces of about `max_tokens` (each part counted once, so this
    stays linear; a part that alone is too long is split further)."""
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for part in parts:
        tokens = counter.count_tokens(joiner + part)
        if current and used + tokens > max_tokens:
            pieces.append(joiner.join(current))
            current, used = [], 0
        if tokens > max_tokens:
            pieces.extend(_fit(part, counter, max_tokens))
            continue
        current.append(part)
        used += tokens
    if current:
        pieces.append(joiner.join(current))
    return pieces

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
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# A paragraph longer than this (one endless line) is cut by characters first, into pieces of about
# four characters per allowed token (most text has 3-5; a piece still too long is split further).
_LONG_PARAGRAPH_CHARS = 65_536
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Chunk:
    document: str  # file name
    index: int  # position within its document
    pages: tuple[int, ...]  # 1-based pages covered, in order
    text: str
    tokens: int  # the sum of its pieces' counts (the joined text may differ by a token at a joint)

    @property
    def page_label(self) -> str:
        first, last = self.pages[0], self.pages[-1]
        return f"page {first}" if first == last else f"pages {first}-{last}"


def chunk_documents(
    documents: Sequence[Document], counter: TokenCounter, max_tokens: int = DEFAULT_CHUNK_TOKENS
) -> list[Chunk]:
    return [chunk for document in documents for chunk in chunk_document(document, counter, max_tokens)]


def chunk_document(document: Document, counter: TokenCounter, max_tokens: int = DEFAULT_CHUNK_TOKENS) -> list[Chunk]:
    """Pack the document's paragraphs into chunks of at most `max_tokens` tokens, in order. Every
    piece of text is counted once; a chunk's count is the sum of its pieces' (and joints')."""
    chunks: list[Chunk] = []
    texts: list[str] = []
    pages: list[int] = []
    used = 0
    joiner = counter.count_tokens(_JOINER)
    for page, piece, tokens in _pieces(document, counter, max_tokens):
        if texts and used + joiner + tokens > max_tokens:
            chunks.append(Chunk(document.name, len(chunks), tuple(pages), _JOINER.join(texts), used))
            texts, pages, used = [], [], 0
        used += tokens + (joiner if texts else 0)
        texts.append(piece)
        if page not in pages:
            pages.append(page)
    if texts:
        chunks.append(Chunk(document.name, len(chunks), tuple(pages), _JOINER.join(texts), used))
    return chunks


def _pieces(document: Document, counter: TokenCounter, max_tokens: int) -> Iterator[tuple[int, str, int]]:
    """(page number, text, tokens) for every paragraph, split further where it is too long. A
    paragraph of many thousand characters (one endless line) is first cut by characters, so that
    no single count or split ever sees more than a few thousand characters."""
    for page in document.pages:
        for paragraph in _PARAGRAPH_BREAK.split(page.text):
            for part in _cut_long(paragraph.strip(), max_tokens * _CHARS_PER_TOKEN):
                for piece, tokens in _fit(part, counter, max_tokens):
                    yield page.number, piece, tokens


def _cut_long(text: str, size: int) -> Iterator[str]:
    """A very long `text` in pieces of at most `size` characters: cut after the last sentence end
    in the second half of each piece, else at its last space, else anywhere (text without
    spaces). Shorter text stays whole."""
    start = 0
    while len(text) - start > max(size, _LONG_PARAGRAPH_CHARS if start == 0 else 0):
        lowest, highest = start + size // 2, start + size
        ends = [match.end() for match in _SENTENCE_END.finditer(text, lowest, highest)]
        end = ends[-1] if ends else max(text.rfind(" ", lowest, highest), text.rfind("\n", lowest, highest)) + 1
        end = end if end > lowest else highest
        if piece := text[start:end].strip():
            yield piece
        start = end
    if piece := text[start:].strip():
        yield piece


def _fit(text: str, counter: TokenCounter, max_tokens: int) -> list[tuple[str, int]]:
    """`text` as pieces of at most `max_tokens` tokens, each with its count. Text of more than
    eight characters per allowed token is too long for certain and is not counted whole."""
    tokens = counter.count_tokens(text) if len(text) <= max_tokens * 8 else None
    if tokens is not None and (tokens <= max_tokens or len(text) == 1):
        return [(text, tokens)]
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) > 1:
        return _pack(sentences, counter, max_tokens, " ")
    words = text.split(" ")
    if len(words) > 1:
        return _pack(words, counter, max_tokens, " ")
    # No spaces at all (e.g. Chinese without punctuation): parts that should fit, each checked.
    size = len(text) * max_tokens * 9 // (10 * tokens) if tokens else max_tokens * _CHARS_PER_TOKEN
    size = max(1, min(size, len(text) // 2))
    parts = (text[start : start + size] for start in range(0, len(text), size))
    return [piece for part in parts for piece in _fit(part, counter, max_tokens)]


def _pack(parts: Sequence[str], counter: TokenCounter, max_tokens: int, joiner: str) -> list[tuple[str, int]]:
    """Greedily join `parts` into pieces of about `max_tokens` (each part counted once, so this
    stays linear; a part that alone is too long is split further)."""
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    used = 0
    for part in parts:
        tokens = counter.count_tokens(joiner + part)
        if current and used + tokens > max_tokens:
            pieces.append((joiner.join(current), used))
            current, used = [], 0
        if tokens > max_tokens:
            pieces.extend(_fit(part, counter, max_tokens))
            continue
        current.append(part)
        used += tokens
    if current:
        pieces.append((joiner.join(current), used))
    return pieces

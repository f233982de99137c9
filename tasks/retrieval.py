"""Rank chunks for a query with BM25 (bm25s) and pick the best ones that fit a token budget.

Words are lower-cased Unicode word runs; Chinese, Japanese and Korean text, which has no spaces,
is indexed as overlapping character pairs, so those documents are searchable too. The chosen
chunks go back in document order, so the model reads them as the document tells them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s

from tasks.chunking import Chunk

logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import and logs every index build
_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")


@dataclass(frozen=True)
class ScoredChunk:
    chunk: Chunk
    score: float


def terms(text: str) -> list[str]:
    """BM25 terms: words, and character pairs inside runs of CJK characters."""
    words = _WORD.findall(text.lower())
    if not _CJK.search(text):  # most text: no word needs splitting (a long document has millions)
        return words
    found: list[str] = []
    for word in words:
        for piece in _split_cjk(word):
            found.append(piece)
    return found


def _split_cjk(word: str) -> list[str]:
    if not _CJK.search(word):
        return [word]
    pieces: list[str] = []
    for run in re.split(f"({_CJK.pattern})", word):
        if not run:
            continue
        if _CJK.fullmatch(run):
            pieces.extend(run[i : i + 2] for i in range(max(1, len(run) - 1)))
        else:
            pieces.append(run)
    return pieces


def rank(chunks: Sequence[Chunk], query: str) -> list[ScoredChunk]:
    """All chunks, best first (ties keep document order)."""
    if not chunks:
        return []
    index = bm25s.BM25()
    index.index(_term_ids(chunks), show_progress=False)
    query_terms = terms(query)
    scores = index.get_scores(query_terms) if query_terms else [0.0] * len(chunks)
    order = sorted(range(len(chunks)), key=lambda i: (-float(scores[i]), i))
    return [ScoredChunk(chunks[i], float(scores[i])) for i in order]


def _term_ids(chunks: Sequence[Chunk]) -> tuple[list[list[int]], dict[str, int]]:
    """Each chunk's terms as ids of one vocabulary: a long document's millions of words are kept
    as small ints, not as millions of strings at once."""
    vocabulary: dict[str, int] = {}
    number = lambda term: vocabulary.setdefault(term, len(vocabulary))  # noqa: E731
    return [[number(term) for term in terms(chunk.text) or ["\u2400"]] for chunk in chunks], vocabulary


def select(chunks: Sequence[Chunk], query: str, token_budget: int, overhead: int = 0) -> list[ScoredChunk]:
    """The best-ranked chunks whose tokens (plus `overhead` each) fit `token_budget`, returned in
    document order.

    Only chunks that share a term with the query are taken; when none does, the beginning of
    the documents stands in (titles, parties and dates usually sit there)."""
    ranked = rank(chunks, query)
    matching = [scored for scored in ranked if scored.score > 0] or [ScoredChunk(c, 0.0) for c in chunks]
    chosen: list[ScoredChunk] = []
    used = 0
    for scored in matching:
        if used + scored.chunk.tokens + overhead > token_budget:
            continue
        chosen.append(scored)
        used += scored.chunk.tokens + overhead
    position = {id(chunk): i for i, chunk in enumerate(chunks)}
    return sorted(chosen, key=lambda scored: position[id(scored.chunk)])

"""Rank chunks for a query with BM25 (bm25s) and pick the few that matter within a token budget.

Words are lower-cased Unicode word runs; Chinese, Japanese and Korean text, which has no spaces,
is indexed as overlapping character pairs, so those documents are searchable too. A query's
function words do not count: the stop words of the documents' language (bm25s's lists), and, for
every language, a word found in most passages of the document at hand (it tells none of them
apart) unless the query has no other. The chosen chunks are the best few (TOP_K) that score at least
SCORE_CUT of the best one, and go back in document order, so the model reads them as the
document tells them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
from bm25s import stopwords

from tasks.chunking import Chunk
from tasks.documents import Document

logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import and logs every index build
_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")


# The documents' language's function words (bm25s's lists; Chinese, Japanese and Korean are
# searched by character pairs, and Arabic and Czech have no list: the share below serves them).
# One language's list only: "war", "die" and "will" are function words in German, not in English.
STOP_WORDS = {language: frozenset(getattr(stopwords, name)) for language, name in (
    ("en", "STOPWORDS_EN_PLUS"), ("de", "STOPWORDS_GERMAN"), ("fr", "STOPWORDS_FRENCH"),
    ("es", "STOPWORDS_SPANISH"), ("pt", "STOPWORDS_PORTUGUESE"), ("it", "STOPWORDS_ITALIAN"),
    ("nl", "STOPWORDS_DUTCH"))}  # fmt: skip
COMMON_SHARE = 0.5  # a query word in more than this share of the passages tells them apart from nothing...
COMMON_MIN_CHUNKS = 4  # ...when there are enough passages to say so
TOP_K = 4  # passages at most: a short answer rests on one or two, and every extra one is noise
SCORE_CUT = 0.35  # a passage scoring under this share of the best one is left out


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


def rank(chunks: Sequence[Chunk], query: str, language: str | None = None) -> list[ScoredChunk]:
    """All chunks, best first (ties keep document order), for the query's telling words;
    `language`: the documents' (its stop words do not count)."""
    if not chunks:
        return []
    ids, vocabulary = _term_ids(chunks)
    index = bm25s.BM25()
    index.index((ids, vocabulary), show_progress=False)
    query_terms = telling_terms(query, ids, vocabulary, language)
    scores = index.get_scores(query_terms) if query_terms else [0.0] * len(chunks)
    order = sorted(range(len(chunks)), key=lambda i: (-float(scores[i]), i))
    return [ScoredChunk(chunks[i], float(scores[i])) for i in order]


def telling_terms(
    query: str, chunk_ids: list[list[int]], vocabulary: dict[str, int], language: str | None = None
) -> list[str]:
    """The query's terms that can tell passages apart: no stop words of `language`, none found in
    most passages (unless every term is: then they are all the query has)."""
    stop = STOP_WORDS.get(language or "", frozenset())
    found = [term for term in terms(query) if term not in stop and term in vocabulary]
    if len(chunk_ids) < COMMON_MIN_CHUNKS or not found:
        return found
    wanted = {vocabulary[term] for term in found}
    counts = dict.fromkeys(wanted, 0)
    for ids in chunk_ids:
        for term_id in wanted.intersection(ids):
            counts[term_id] += 1
    telling = [term for term in found if counts[vocabulary[term]] <= COMMON_SHARE * len(chunk_ids)]
    return telling or found


def _term_ids(chunks: Sequence[Chunk]) -> tuple[list[list[int]], dict[str, int]]:
    """Each chunk's terms as ids of one vocabulary: a long document's millions of words are kept
    as small ints, not as millions of strings at once."""
    vocabulary: dict[str, int] = {}
    number = lambda term: vocabulary.setdefault(term, len(vocabulary))  # noqa: E731
    return [[number(term) for term in terms(chunk.text) or ["\u2400"]] for chunk in chunks], vocabulary


def select(
    chunks: Sequence[Chunk],
    query: str,
    token_budget: int,
    overhead: int = 0,
    top_k: int = TOP_K,
    language: str | None = None,
) -> list[ScoredChunk]:
    """The best `top_k` chunks at most that score at least SCORE_CUT of the best one and whose
    tokens (plus `overhead` each) fit `token_budget`, returned in document order; `language`: the
    documents' (see `rank`).

    When no chunk shares a telling word with the query (a question in another language than the
    document, or about nothing it names), the beginning of the documents stands in (titles,
    parties and dates usually sit there) as far as the budget allows."""
    ranked = rank(chunks, query, language)
    best = ranked[0].score if ranked else 0.0
    if best > 0:
        candidates = [scored for scored in ranked if scored.score >= SCORE_CUT * best][:top_k]
    else:
        candidates = [ScoredChunk(chunk, 0.0) for chunk in chunks]
    chosen: list[ScoredChunk] = []
    used = 0
    for scored in candidates:
        if used + scored.chunk.tokens + overhead > token_budget:
            continue
        chosen.append(scored)
        used += scored.chunk.tokens + overhead
    position = {id(chunk): i for i, chunk in enumerate(chunks)}
    return sorted(chosen, key=lambda scored: position[id(scored.chunk)])


def documents_language(documents: Sequence[Document]) -> str | None:
    """The one language the documents are written in (None: unknown, or several)."""
    languages = {document.language for document in documents}
    return languages.pop() if len(languages) == 1 else None

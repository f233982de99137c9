"""Numbered citations for an answer: each marker [n] ties a sentence of the answer to one sentence
of evidence on one page, so a person can open that page with the sentence marked.

Evidence comes only from the pages of the few passages the answer drew on, split into sentences.
A verified quote is its own evidence. Otherwise an answer sentence is matched to the page sentence
that shares most of its content words, rarer words counting more (idf over the candidates); an
answer that matches nothing still points at the best sentence of its top passage. Every step is
bounded: a few passages, a window of a long page, a capped number of sentences and citations.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.chunking import Chunk
from tasks.documents import Document
from tasks.errors import DocumentError
from tasks.events import Citation, Quote
from tasks.positions import highlight
from tasks.retrieval import ScoredChunk

MAX_CITATIONS = 8
MAX_PASSAGES = 5  # the top passages whose pages give evidence
MAX_CANDIDATES = 1_000  # page sentences considered, at most
MAX_ANSWER_SENTENCES = 100  # answer sentences matched, at most (the first ones)
MAX_EVIDENCE_CHARS = 600
WHOLE_PAGE_CHARS = 20_000  # a longer page (a whole TXT file) gives only the window its passage covers
MIN_SHARED_TOKENS = 2
MIN_COVERAGE = 0.3  # the share of an answer sentence's content (by weight) its evidence must hold

# A sentence ends after . ! ? (and any closing quote or bracket) before a space, after CJK
# 。！？, and at a paragraph break (an empty line).
_BOUNDARY = re.compile(r"[.!?][\"'”’»)\]]*(?=\s)|[。！？][\"'”’»)\]」』]*|\n[^\S\n]*\n")
_NEXT_CHAR = re.compile(r"\s*(\S)")
HEADING_CHARS = 60  # a line this short that ends a sentence without a full stop is a heading
_WORD = re.compile(r"\w+")
_STOP_WORDS = (
    "the and for are was were with that this from has have had not but its into than then they them their "
    "there been being will would can could should what when where which who whom why how does did about also "
    "all any our your his her she you one these those such more most other some only very "
    "der die das und ist sind war mit von für den dem des ein eine einer eines nicht auch auf als wie bei "
    "aus nach wurde werden hat oder "
    "les des une est sont dans pour par avec sur qui que pas aux ces son ses été elle "
    "los las una del por para con son fue como sus más está"
)
STOP_WORDS = frozenset(_STOP_WORDS.split())  # a few function words of English, German, French, Spanish


@dataclass(frozen=True)
class Candidate:
    """A page sentence that may serve as evidence."""

    document: str
    page: int
    text: str  # as the page has it, whitespace collapsed, shortened to MAX_EVIDENCE_CHARS
    source: int  # index of the passage it came from, in the sources' order (most relevant first)
    tokens: frozenset[str]


@dataclass(frozen=True)
class _Evidence:
    kind: str
    document: str
    page: int
    text: str
    source: int | None
    anchor: int


def cite(
    answer: str, request: str, passages: Sequence[ScoredChunk], documents: Sequence[Document], quotes: Sequence[Quote]
) -> list[Citation]:
    """The citations of `answer` (stripped, as the result's text): verified quotes first, then the
    best page sentence for each answer sentence, else one or two sentences of the top passage for
    the request and answer together. `passages` are the ones given to `source_list` (their
    indexes in `sources` follow the same order); at most MAX_CITATIONS, numbered by first use."""
    ranked = ranked_passages(passages)
    pool = candidates(ranked, documents)
    spans = sentence_spans(answer)
    by_sentence = _quoted(answer, spans, quotes, ranked)
    weights = _idf(pool)
    index = _inverted(pool)
    found: list[_Evidence] = []
    for number, (start, end) in enumerate(spans):
        if len(found) >= MAX_CITATIONS:
            break
        if number in by_sentence:
            found += by_sentence[number]
        elif number < MAX_ANSWER_SENTENCES and (best := _match(answer[start:end], pool, weights, index)) is not None:
            found.append(_Evidence("match", best.document, best.page, best.text, best.source, end))
    if not found and ranked:
        found = _passage(f"{request} {answer}", pool, weights, len(answer))
    return _numbered(found[:MAX_CITATIONS], documents)


def ranked_passages(passages: Sequence[ScoredChunk]) -> list[ScoredChunk]:
    """The passages in the order of `source_list`: most relevant first (a stable sort)."""
    return sorted(passages, key=lambda scored: -scored.score)


def candidates(ranked: Sequence[ScoredChunk], documents: Sequence[Document]) -> list[Candidate]:
    """The sentences of the pages of the top MAX_PASSAGES passages, each once, at most
    MAX_CANDIDATES: a page longer than WHOLE_PAGE_CHARS gives only its passage's window."""
    by_name = {document.name: document for document in documents}
    seen: set[tuple[str, int, str]] = set()
    found: list[Candidate] = []
    for source, scored in enumerate(ranked[:MAX_PASSAGES]):
        chunk = scored.chunk
        document = by_name.get(chunk.document)
        for number in chunk.pages if document else ():
            if not 1 <= number <= len(document.pages):
                continue
            window = _window(document.pages[number - 1].text, chunk, first=number == chunk.pages[0])
            for start, end in sentence_spans(window):
                text = evidence_text(window[start:end])
                if (chunk.document, number, text) in seen:
                    continue
                seen.add((chunk.document, number, text))
                found.append(Candidate(chunk.document, number, text, source, frozenset(content_tokens(text))))
                if len(found) >= MAX_CANDIDATES:
                    return found
    return found


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every sentence of `text`, without the spaces around it; a short line
    without end punctuation before a capital (a heading) is a sentence of its own."""
    spans, start = [], 0
    for boundary in _BOUNDARY.finditer(text):
        spans += _headings(text, start, boundary.end())
        start = boundary.end()
    spans += _headings(text, start, len(text))
    return [(start, end) for start, end in (_strip(text, *span) for span in spans) if end > start]


def _headings(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The span cut after each heading line in it (a line break elsewhere only wraps a sentence)."""
    spans, line = [], start
    while (newline := text.find("\n", line, end)) >= 0:
        words = text[line:newline].strip()
        following = _NEXT_CHAR.match(text, newline, end)
        if 0 < len(words) <= HEADING_CHARS and words[-1] not in ",;:-" and following and following[1].isupper():
            spans.append((start, newline))
            start = newline + 1
        line = newline + 1
    return [*spans, (start, end)]


def content_tokens(text: str) -> list[str]:
    """The words that carry meaning: casefolded, no stop words, none of one or two characters
    (except two-digit numbers: "45 employees")."""
    words = _WORD.findall(text.casefold())
    return [w for w in words if (len(w) > 2 or (len(w) == 2 and w.isdigit())) and w not in STOP_WORDS]


def evidence_text(text: str) -> str:
    """`text` with runs of whitespace as one space, at most MAX_EVIDENCE_CHARS (cut at a word)."""
    text = " ".join(text[: MAX_EVIDENCE_CHARS * 4].split())
    if len(text) <= MAX_EVIDENCE_CHARS:
        return text
    cut = text[: MAX_EVIDENCE_CHARS - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip() + "…"


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _window(page: str, chunk: Chunk, first: bool) -> str:
    """The page, or on a long page the part the passage covers: from where it starts (on its first
    page; a later page holds its continuation from the top), as long as the passage and a little."""
    if len(page) <= WHOLE_PAGE_CHARS:
        return page
    start = 0
    if first and (words := chunk.text.split()[:8]):
        found = re.search(r"\s+".join(re.escape(word) for word in words), page)
        start = found.start() if found else 0
    return page[start : start + min(len(chunk.text) + MAX_EVIDENCE_CHARS, WHOLE_PAGE_CHARS)]


def _idf(pool: Sequence[Candidate]) -> dict[str, float]:
    counts = Counter(token for candidate in pool for token in candidate.tokens)
    return {token: math.log(1 + len(pool) / count) for token, count in counts.items()}


def _inverted(pool: Sequence[Candidate]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for number, candidate in enumerate(pool):
        for token in candidate.tokens:
            index.setdefault(token, []).append(number)
    return index


def _scores(tokens: set[str], weights: dict[str, float], index: dict[str, list[int]]) -> dict[int, tuple[float, int]]:
    """Candidate number -> (shared weight, shared tokens), for the candidates sharing a token."""
    scores: dict[int, tuple[float, int]] = {}
    for token in tokens:
        for number in index.get(token, ()):
            weight, count = scores.get(number, (0.0, 0))
            scores[number] = (weight + weights[token], count + 1)
    return scores


def _match(sentence: str, pool: Sequence[Candidate], weights: dict[str, float], index) -> Candidate | None:
    """The candidate that holds most of `sentence`'s content (ties: the more focused one, then the
    first), if it holds enough of it."""
    tokens = set(content_tokens(sentence[: MAX_EVIDENCE_CHARS * 4]))
    scores = _scores(tokens, weights, index)
    if not scores:
        return None
    unseen = math.log(1 + len(pool))  # a word in no candidate weighs as much as the rarest
    total = sum(weights.get(token, unseen) for token in tokens)

    def rank(number: int) -> tuple[float, float, int]:
        weight = scores[number][0]
        own = sum(weights[token] for token in pool[number].tokens)
        return weight, weight / own, -number

    best = max(scores, key=rank)
    weight, shared = scores[best]
    return pool[best] if shared >= MIN_SHARED_TOKENS and weight >= MIN_COVERAGE * total else None


def _passage(query: str, pool: Sequence[Candidate], weights: dict[str, float], anchor: int) -> list[_Evidence]:
    """One or two sentences of the top passage for `query` (its first sentence when none shares a
    word), cited at the end of the answer."""
    top = [candidate for candidate in pool if candidate.source == 0]
    if not top:
        return []
    tokens = set(content_tokens(query[:100_000]))
    scores = [sum(weights[token] for token in candidate.tokens & tokens) for candidate in top]
    order = sorted(range(len(top)), key=lambda number: (-scores[number], number))
    best = scores[order[0]]
    chosen = order[:1] + [n for n in order[1:2] if scores[n] > 0 and scores[n] >= best / 2]
    return [_Evidence("passage", top[n].document, top[n].page, top[n].text, 0, anchor) for n in chosen]


def _quoted(
    answer: str, spans: Sequence[tuple[int, int]], quotes: Sequence[Quote], ranked: Sequence[ScoredChunk]
) -> dict[int, list[_Evidence]]:
    """Verified quotes by the answer sentence that ends them: each is its own evidence."""
    by_sentence: dict[int, list[_Evidence]] = {}
    at = 0
    for quote in quotes:
        found = answer.find(quote["text"], at)
        if found < 0:
            continue
        at = found + len(quote["text"])
        if not quote["verified"] or quote["document"] is None or quote["page"] is None:
            continue
        number = next((n for n, (_, end) in enumerate(spans) if end >= at), len(spans) - 1)
        source = next((n for n, scored in enumerate(ranked) if scored.chunk.document == quote["document"]
                       and quote["page"] in scored.chunk.pages), None)  # fmt: skip
        text = evidence_text(quote["text"])
        evidence = _Evidence("quote", quote["document"], quote["page"], text, source, spans[number][1])
        by_sentence.setdefault(number, []).append(evidence)
    return by_sentence


def _numbered(found: Sequence[_Evidence], documents: Sequence[Document]) -> list[Citation]:
    """Citations numbered by first use (the same evidence keeps its number), with their rects."""
    by_name = {document.name: document for document in documents}
    numbers: dict[tuple[str, int, str], int] = {}
    rects: dict[tuple[str, int, str], list[list[float]]] = {}
    citations: list[Citation] = []
    for evidence in found:
        key = (evidence.document, evidence.page, evidence.text)
        document = by_name[evidence.document]
        if key not in numbers:
            numbers[key] = len(numbers) + 1
            rects[key] = _rects(document, evidence.page, evidence.text)
        citations.append({
            "number": numbers[key],
            "document": evidence.document,
            "page": evidence.page,
            "text": evidence.text,
            "kind": evidence.kind,
            "anchor": evidence.anchor,
            "source": evidence.source,
            "ocr": document.pages[evidence.page - 1].ocr,
            "rects": rects[key],
        })  # fmt: skip
    return citations


def _rects(document: Document, page: int, text: str) -> list[list[float]]:
    """Where `text` is on a PDF page; [] for other formats, or when it cannot be found or shown
    (a citation never fails the task)."""
    if document.path is None or document.path.suffix.lower() != ".pdf":
        return []
    try:
        found = highlight(document, page, text.removesuffix("…"))
    except DocumentError:
        return []
    return [list(rect) for rect in found.rects] if found else []

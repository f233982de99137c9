"""Normalize extracted text: what PDF producers leave behind, undone.

- ligature characters (ﬁ, ﬂ, ...) become letters;
- accents emitted as separate spacing marks (`¨o`) are joined to their letter (`ö`);
- words hyphenated across line ends are rejoined (keeping the hyphen of real compounds);
- lines repeated at the top or bottom of most pages (running headers, footers, page numbers) go.
Pure functions on strings; no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

LIGATURES = {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st", "Ꜳ": "AA", "ꜳ": "aa"}
# Spacing accent -> combining accent. Acute and grave also serve as apostrophes (it´s), so they are
# joined only to vowels; the others have no such second use.
SPACING_ACCENTS = {
    "¨": "\u0308", "ˆ": "\u0302", "˜": "\u0303", "¸": "\u0327", "ˇ": "\u030c", "˚": "\u030a",
    "´": "\u0301", "`": "\u0300",
}  # fmt: skip
_VOWEL_ONLY = {"´", "`"}
_VOWELS = set("aeiouyAEIOUY")
_ACCENT_RE = re.compile("([" + re.escape("".join(SPACING_ACCENTS)) + "]) ?([^\\W\\d_])")
# Patterns that start with \w+ begin only at a word's start ((?<!\w)): tried at every letter of a
# long unbroken word, each attempt rescans the rest of it (README, "Measured limits").
_HYPHEN_BREAK_RE = re.compile(r"(?<!\w)(\w+)-\n[ \t]*([a-zà-ÿ]\w*)[ \t]?")
# Two to nine parts: an unbounded repeated group keeps a backtracking record per repetition (a
# 20 MB "a-a-a-..." took 1.2 GB); longer chains match in parts, and a two-part break never joins them.
_COMPOUND_RE = re.compile(r"(?<!\w)\w+(?:-\w+){1,8}")
_PAGE_NUMBER_RE = re.compile(
    r"^[\s\-–—|]*(page|seite|página|pagina|strana|p\.)?\s*\d+(\s*(/|of|von|de|di|z)\s*\d+)?[\s\-–—|]*$", re.I
)
_MAX_RUNNING_CHARS = 100
_EDGE_LINES = 2  # how many lines at each end of a page may be a running header or footer
_PIECES_PER_JOIN = 4096
_MAX_COMPOUND_CANDIDATES = 100_000  # distinct words broken at line ends; beyond, breaks just join


def clean_pages(pages: Sequence[str], *, from_pdf: bool) -> list[str]:
    """Normalize every page; PDF pages also lose running headers/footers and get accents joined."""
    pages = [normalize_characters(page, join_accents=from_pdf) for page in pages]
    if from_pdf:
        pages = drop_running_lines(pages)
    words = _known_compounds(pages)
    return [rejoin_hyphenated(page, words) for page in pages]


def normalize_characters(text: str, join_accents: bool = True) -> str:
    text = text.replace("\u00ad", "")  # soft hyphens only mark where a word may break
    for ligature, letters in LIGATURES.items():
        text = text.replace(ligature, letters)
    if join_accents:
        text = substitute(_ACCENT_RE, _join_accent, text)
    return unicodedata.normalize("NFC", text)


def _join_accent(match: re.Match) -> str:
    mark, letter = match.group(1), match.group(2)
    letter = "i" if letter == "ı" else letter  # producers put the mark on a dotless i: ¨ı -> ï
    if mark in _VOWEL_ONLY and letter not in _VOWELS:
        return match.group(0)
    composed = unicodedata.normalize("NFC", letter + SPACING_ACCENTS[mark])
    return composed if len(composed) == 1 else match.group(0)


def rejoin_hyphenated(text: str, known_words: set[str] | None = None) -> str:
    """`inter-\\nnational` -> `international`; `well-\\nknown` stays `well-known` when the document
    also writes `well-known` elsewhere."""

    def join(match: re.Match) -> str:
        head, tail = match.group(1), match.group(2)
        hyphen = "-" if known_words and f"{head}-{tail}".lower() in known_words else ""
        return f"{head}{hyphen}{tail}\n"

    return substitute(_HYPHEN_BREAK_RE, join, text)


def substitute(pattern: re.Pattern, replace: Callable[[re.Match], str], text: str) -> str:
    """`pattern.sub(replace, text)` in memory near the text's size: `re.sub` keeps every piece
    until the end (millions of matches in one file cost GBs), here they are joined as they come."""
    done: list[str] = []
    pieces: list[str] = []
    position = 0
    for match in pattern.finditer(text):
        pieces += (text[position : match.start()], replace(match))
        position = match.end()
        if len(pieces) >= _PIECES_PER_JOIN:
            done.append("".join(pieces))
            pieces.clear()
    if not done and not pieces:
        return text
    return "".join([*done, *pieces, text[position:]])


def drop_running_lines(pages: Sequence[str]) -> list[str]:
    """Remove lines that repeat at the top or bottom of most pages (running headers and footers,
    'Page 3 of 9'), and page numbers: bare numbers at a page's edge that count up with the pages.
    Any other number stays, even alone on a line. Only the edge lines are split off a page: the
    body stays one string, however many lines it has."""
    if len(pages) < 3:
        return [page.strip() for page in pages]
    split = [_page_edges(page) for page in pages]
    threshold = max(3, 0.5 * len(split))
    counts = Counter(key for head, _, tail in split for key in {_shape(line) for line in (*head, *tail)})
    running = {key for key, count in counts.items() if key and count >= threshold and key != "#"}
    offsets = Counter(
        offset for index, (head, _, tail) in enumerate(split) for offset in _number_offsets([*head, *tail], index)
    )
    offset = next((value for value, count in offsets.most_common(1) if count >= threshold), None)

    def kept(lines: list[str], index: int) -> list[str]:
        return [
            line
            for line in lines
            if not (_shape(line) in running or (offset is not None and _page_number(line, index) == offset))
        ]

    return [
        "\n".join([*kept(head, index), body, *kept(tail, index)]).strip()
        for index, (head, body, tail) in enumerate(split)
    ]


def _page_edges(page: str) -> tuple[list[str], str, list[str]]:
    """A page as (its first lines, the body between, its last lines). The edges are the first and
    last few lines; fewer on short pages, none on pages of one or two lines, so a page's body is
    never mistaken for its header or footer."""
    count = page.count("\n") + 1
    if count < 3:
        return [], page, []
    depth = max(1, min(_EDGE_LINES, count // 3))
    head = page.split("\n", depth)
    tail = head.pop().rsplit("\n", depth)
    return head, tail.pop(0), tail


def _number_offsets(edge_lines: list[str], index: int) -> set[int]:
    """For each bare number at the page's edge: its value minus the page's index."""
    return {value for line in edge_lines if (value := _page_number(line, index)) is not None}


def _page_number(line: str, index: int) -> int | None:
    if not line.strip() or len(line) > _MAX_RUNNING_CHARS:  # long lines are no page numbers (and slow to match)
        return None
    match = _PAGE_NUMBER_RE.match(line)
    digits = re.findall(r"\d+", line) if match else []
    return int(digits[0]) - index if digits else None


def _shape(line: str) -> str:
    """A line with its numbers masked, so 'Page 3 of 9' and 'Page 4 of 9' count as one header.
    Long lines are body text, never headers: they get no shape."""
    if len(line) > 8 * _MAX_RUNNING_CHARS:  # not split at all: an edge line may be megabytes
        return ""
    line = " ".join(line.split())
    return re.sub(r"\d+", "#", line).lower() if len(line) <= _MAX_RUNNING_CHARS else ""


def _known_compounds(pages: Sequence[str]) -> set[str]:
    """The hyphenated words (lower-case) that both break across a line end somewhere and appear
    whole elsewhere: only those keep their hyphen when rejoined. The candidates come first, so the
    set stays small whatever the text (a page of millions of distinct compounds is not kept)."""
    candidates: set[str] = set()
    for page in pages:
        for match in _HYPHEN_BREAK_RE.finditer(page):
            if len(candidates) >= _MAX_COMPOUND_CANDIDATES:
                break
            candidates.add(f"{match.group(1)}-{match.group(2)}".lower())
    if not candidates:
        return set()
    return {
        word
        for page in pages
        for match in _COMPOUND_RE.finditer(page)
        if (word := match.group(0).lower()) in candidates
    }

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
from collections.abc import Sequence

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
# long unbroken word, each attempt rescans the rest of it (a 20,000-letter word took 10 s).
_HYPHEN_BREAK_RE = re.compile(r"(?<!\w)(\w+)-\n[ \t]*([a-zà-ÿ]\w*)[ \t]?")
_COMPOUND_RE = re.compile(r"(?<!\w)\w+(?:-\w+)+")
_PAGE_NUMBER_RE = re.compile(
    r"^[\s\-–—|]*(page|seite|página|pagina|strana|p\.)?\s*\d+(\s*(/|of|von|de|di|z)\s*\d+)?[\s\-–—|]*$", re.I
)
_MAX_RUNNING_CHARS = 100
_EDGE_LINES = 2  # how many lines at each end of a page may be a running header or footer


def clean_pages(pages: Sequence[str], *, from_pdf: bool) -> list[str]:
    """Normalize every page; PDF pages also lose running headers/footers and get accents joined."""
    pages = [normalize_characters(page, join_accents=from_pdf) for page in pages]
    if from_pdf:
        pages = drop_running_lines(pages)
    words = _word_set(pages)
    return [rejoin_hyphenated(page, words) for page in pages]


def normalize_characters(text: str, join_accents: bool = True) -> str:
    text = text.replace("\u00ad", "")  # soft hyphens only mark where a word may break
    for ligature, letters in LIGATURES.items():
        text = text.replace(ligature, letters)
    if join_accents:
        text = _ACCENT_RE.sub(_join_accent, text)
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

    return _HYPHEN_BREAK_RE.sub(join, text)


def drop_running_lines(pages: Sequence[str]) -> list[str]:
    """Remove lines that repeat at the top or bottom of most pages (running headers and footers,
    'Page 3 of 9'), and page numbers: bare numbers at a page's edge that count up with the pages.
    Any other number stays, even alone on a line."""
    split = [page.split("\n") for page in pages]
    if len(split) < 3:
        return ["\n".join(lines).strip() for lines in split]
    threshold = max(3, 0.5 * len(split))
    counts = Counter(key for lines in split for key in {_shape(line) for line in _edges(lines)})
    running = {key for key, count in counts.items() if key and count >= threshold and key != "#"}
    offsets = Counter(offset for index, lines in enumerate(split) for offset in _number_offsets(lines, index))
    offset = next((value for value, count in offsets.most_common(1) if count >= threshold), None)
    return ["\n".join(_without_running(lines, running, index, offset)).strip() for index, lines in enumerate(split)]


def _without_running(lines: list[str], running: set[str], index: int, offset: int | None) -> list[str]:
    edge = _edge_indexes(len(lines))
    return [
        line
        for position, line in enumerate(lines)
        if position not in edge
        or not (_shape(line) in running or (offset is not None and _page_number(line, index) == offset))
    ]


def _number_offsets(lines: list[str], index: int) -> set[int]:
    """For each bare number at the page's edge: its value minus the page's index."""
    return {value for line in _edges(lines) if (value := _page_number(line, index)) is not None}


def _page_number(line: str, index: int) -> int | None:
    if not line.strip() or len(line) > _MAX_RUNNING_CHARS:  # long lines are no page numbers (and slow to match)
        return None
    match = _PAGE_NUMBER_RE.match(line)
    digits = re.findall(r"\d+", line) if match else []
    return int(digits[0]) - index if digits else None


def _edges(lines: list[str]) -> list[str]:
    return [lines[index] for index in sorted(_edge_indexes(len(lines)))]


def _edge_indexes(count: int) -> set[int]:
    """The first and last few lines of a page; fewer on short pages, none on pages of one or two
    lines, so a page's body is never mistaken for its header or footer."""
    if count < 3:
        return set()
    depth = max(1, min(_EDGE_LINES, count // 3))
    return set(range(min(depth, count))) | set(range(max(0, count - depth), count))


def _shape(line: str) -> str:
    """A line with its numbers masked, so 'Page 3 of 9' and 'Page 4 of 9' count as one header.
    Long lines are body text, never headers: they get no shape."""
    line = " ".join(line.split())
    return re.sub(r"\d+", "#", line).lower() if len(line) <= _MAX_RUNNING_CHARS else ""


def _word_set(pages: Sequence[str]) -> set[str]:
    return {word.lower() for page in pages for word in _COMPOUND_RE.findall(page)}

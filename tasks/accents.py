"""Accents drawn as glyphs of their own, put back on their letters.

Old TeX documents (the OT1 encoding) draw `ü` as a `u` with a separate `¨` glyph placed over it.
pypdf gave them in drawing order (`unterst¨utzt`, which tasks.cleaning joins into `unterstützt`);
PDFium sorts them by position, and an accent higher than its line becomes a line of its own
(`unterstutzt.` then `¨`): the word loses its letter. For a page whose text holds such accents,
the text is built from PDFium's characters instead, each accent moved before the letter it sits on
(under it, for a cedilla), found by its box; the line break PDFium made for it goes too.
"""

from __future__ import annotations

import ctypes

from tasks.cleaning import SPACING_ACCENTS
from tasks.columns import region_of

ACCENTS = frozenset(SPACING_ACCENTS) | {"˙", "¯", "˘", "˝", "˛"}
_BELOW = {"¸", "˛"}  # a cedilla and an ogonek hang under their letter
_GAP, _OVERLAP = 0.8, 0.5  # how far above its letter an accent may sit, or into it, in letter heights
_COLUMN_WIDTH = 8.0  # points: strips of the page in which letters are looked up
_WORD_GAP = 0.25  # a gap wider than this share of the letters' height is a space between words

Box = tuple[float, float, float, float]  # left, bottom, right, top


def has_accents(text: str) -> bool:
    return not ACCENTS.isdisjoint(text)


def text_with_accents_placed(textpage, regions: list[Box] | None) -> str:
    """The page's text from its characters, in the reading order of `regions` (None: PDFium's),
    with every spacing accent moved before the letter it is drawn on."""
    count = textpage.count_chars()
    chars = [chr(unicode_at(textpage, index)) for index in range(count)]
    boxes = [char_box(textpage, index) for index in range(count)]
    order = _reading_order(boxes, regions)
    accents_before: dict[int, list[int]] = {}
    columns = _letters_by_column(chars, boxes)
    for index in range(count):
        if chars[index] in ACCENTS and boxes[index] is not None:
            letter = _letter_of(index, chars, boxes, columns)
            if letter is not None:
                accents_before.setdefault(letter, []).append(index)
    moved = {accent for accents in accents_before.values() for accent in accents}
    in_place: dict[int, str] = {}  # what stands where an accent was taken from (and PDFium's made-up gap)
    for accent in sorted(moved):
        made, separator = _made_for(accent, boxes, moved)
        in_place |= dict.fromkeys(made, "") | {accent: separator}
    out = []
    for index in order:
        if index in in_place:
            out.append(in_place[index])
            continue
        out += [chars[accent] for accent in accents_before.get(index, ())]
        out.append(chars[index])
    return "".join(out)


def _letter_of(accent: int, chars: list[str], boxes: list[Box | None], columns: dict[int, list[int]]) -> int | None:
    """The letter the accent is drawn on: its box holds the accent's middle across, and the accent
    sits just above it (just under it, for a cedilla); the closest such letter."""
    left, bottom, right, top = boxes[accent]
    middle, below = (left + right) / 2, chars[accent] in _BELOW
    best: tuple[float, int] | None = None
    for index in columns.get(int(middle // _COLUMN_WIDTH), ()):
        box = boxes[index]
        if not box[0] <= middle <= box[2]:
            continue
        height = box[3] - box[1]
        gap = box[1] - top if below else bottom - box[3]  # from the letter to the accent
        if -_OVERLAP * height <= gap <= _GAP * height and (best is None or abs(gap) < best[0]):
            best = (abs(gap), index)
    return best[1] if best else None


def _letters_by_column(chars: list[str], boxes: list[Box | None]) -> dict[int, list[int]]:
    """The letters whose boxes cross each strip of the page _COLUMN_WIDTH wide: an accent looks
    only among those of its strip (the letters of every line at that place), not the whole page."""
    columns: dict[int, list[int]] = {}
    for index, box in enumerate(boxes):
        if box is not None and chars[index].isalpha():
            for column in range(int(box[0] // _COLUMN_WIDTH), int(box[2] // _COLUMN_WIDTH) + 1):
                columns.setdefault(column, []).append(index)
    return columns


def _made_for(accent: int, boxes: list[Box | None], moved: set[int]) -> tuple[list[int], str]:
    """The characters PDFium made up around an out-of-line accent (spaces, line breaks: it saw a
    jump) and what goes in their place, judged by the characters on either side (other accents
    that move skipped): nothing where they sit side by side (`unterst|ützt`, `l’|équipe`), a line
    break where the next one is on a new line, else a space."""
    before, after = accent - 1, accent + 1
    while before >= 0 and (boxes[before] is None or before in moved):
        before -= 1
    while after < len(boxes) and (boxes[after] is None or after in moved):
        after += 1
    made = [index for index in (*range(before + 1, accent), *range(accent + 1, after)) if index not in moved]
    if before < 0 or after >= len(boxes) or not made:  # PDFium saw no gap here: none to fill
        return made, ""
    left, right = boxes[before], boxes[after]
    height = max(left[3] - left[1], right[3] - right[1])
    gap = right[0] - left[2]
    if -_OVERLAP * height <= gap <= _WORD_GAP * height:
        return made, ""  # letters side by side: one word
    if right[3] < left[1] or right[0] < left[0]:
        return made, "\r\n"  # the next one is below, or back to the left: a new line
    return made, " "


def _reading_order(boxes: list[Box | None], regions: list[Box] | None) -> list[int]:
    """Character indexes in reading order: by region (a character without a box, a generated space
    or line break, goes with the one before it), PDFium's order within one."""
    if regions is None:
        return list(range(len(boxes)))
    region, keys = len(regions), []
    for box in boxes:
        if box is not None:
            region = region_of(box, regions)
        keys.append(region)
    return sorted(range(len(boxes)), key=keys.__getitem__)


def unicode_at(textpage, index: int) -> int:
    import pypdfium2.raw as pdfium_c

    return pdfium_c.FPDFText_GetUnicode(textpage, index)


def char_box(textpage, index: int) -> Box | None:
    """A character's box; None for one PDFium made up (a space, a line break) or an empty one."""
    import pypdfium2.raw as pdfium_c

    if pdfium_c.FPDFText_IsGenerated(textpage, index) == 1:
        return None
    left, right, bottom, top = ctypes.c_double(), ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
    if not pdfium_c.FPDFText_GetCharBox(textpage, index, left, right, bottom, top):
        return None
    if right.value <= left.value and top.value <= bottom.value:
        return None
    return left.value, bottom.value, right.value, top.value

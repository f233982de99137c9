"""Reading order for pages set in two columns: the regions of a page to read one after another.

PDFium gives the text in the order it was drawn, and a page drawn line by line across two columns
(some producers do) reads as `left line 1 right line 1 left line 2 ...`. From the rectangles of the
page's text runs (PDFium merges each run of characters on a line into one), this finds a vertical
gutter that no run crosses, and cuts the page into bands: a band with text on both sides of the
gutter reads its left column, then its right; a run across the gutter (a title, a full-width
figure caption) is a band of its own. Pure geometry on numbers; no PDF here.

Only prose columns count: each side's runs must be on average a quarter of the page wide or more,
so that a table or a form (narrow labels left, values right) keeps its rows together.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

Rect = tuple[float, float, float, float]  # left, bottom, right, top in PDF points (y grows upwards)
OUTSIDE = 1e6  # regions reach past the page, so no character falls between two of them
MIN_LINES_PER_COLUMN = 4
MIN_COLUMN_SHARE = 0.25  # of the page width: the median width of a column's runs
MAX_CROSSING_SHARE = 0.2  # of all runs: titles and captions across both columns
_GUTTER_FROM, _GUTTER_TO, _STEPS = 0.3, 0.7, 80  # where a gutter is looked for, as shares of the width


def reading_regions(runs: Sequence[Rect], page_width: float) -> list[Rect] | None:
    """The regions to read in order, top to bottom (two per band of two columns), or None when the
    page is not set in two columns (then its text reads in the order PDFium gives it)."""
    if len(runs) < 2 * MIN_LINES_PER_COLUMN or page_width <= 0:
        return None
    gutter = _find_gutter(runs, page_width)
    if gutter is None:
        return None
    return _bands(runs, gutter)


def region_of(box: Rect, regions: Sequence[Rect]) -> int:
    """The index of the region that holds the middle of `box` (len(regions) for none)."""
    middle_x, middle_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for number, (left, bottom, right, top) in enumerate(regions):
        if left <= middle_x <= right and bottom <= middle_y <= top:
            return number
    return len(regions)


def _find_gutter(runs: Sequence[Rect], page_width: float) -> float | None:
    """The x of the gutter: the place in the middle of the page that the fewest runs cross, with
    prose columns on both sides; None when there is no such place."""
    best: tuple[int, float, float] | None = None  # (crossing runs, distance from the middle, x)
    for step in range(_STEPS + 1):
        x = page_width * (_GUTTER_FROM + (_GUTTER_TO - _GUTTER_FROM) * step / _STEPS)
        left = [run[2] - run[0] for run in runs if run[2] <= x]  # the widths of the runs on each side
        right = [run[2] - run[0] for run in runs if run[0] >= x]
        crossing = len(runs) - len(left) - len(right)
        if crossing > MAX_CROSSING_SHARE * len(runs) or min(len(left), len(right)) < MIN_LINES_PER_COLUMN:
            continue
        if min(median(left), median(right)) < MIN_COLUMN_SHARE * page_width:
            continue
        candidate = (crossing, abs(x - page_width / 2), x)
        best = min(best, candidate) if best else candidate
    return best[2] if best else None


def _bands(runs: Sequence[Rect], gutter: float) -> list[Rect]:
    """Cut the page at every run that crosses the gutter: bands of columns between them."""
    crossing = sorted((run for run in runs if run[0] < gutter < run[2]), key=lambda run: -run[3])
    column_runs = [run for run in runs if not run[0] < gutter < run[2]]
    regions: list[Rect] = []
    top = OUTSIDE
    for run in crossing:
        # The band of columns above this run, down to halfway between the two.
        above = [r for r in column_runs if r[1] >= run[3] and r[3] <= top]
        cut = (min(r[1] for r in above) + run[3]) / 2 if above else run[3]
        regions += _columns(gutter, cut, top) if above else []
        top = cut
        below = [r for r in column_runs if r[3] <= run[1]]
        bottom = (run[1] + max(r[3] for r in below)) / 2 if below else run[1]
        regions.append((-OUTSIDE, bottom, OUTSIDE, top))  # the crossing run, across the page
        top = bottom
    regions += _columns(gutter, -OUTSIDE, top)
    return _merge_full_width(regions)


def _columns(gutter: float, bottom: float, top: float) -> list[Rect]:
    return [(-OUTSIDE, bottom, gutter, top), (gutter, bottom, OUTSIDE, top)]


def _merge_full_width(regions: list[Rect]) -> list[Rect]:
    """Consecutive full-width bands (a title of two lines) read as one."""
    merged: list[Rect] = []
    for region in regions:
        if merged and _full_width(region) and _full_width(merged[-1]):
            merged[-1] = (-OUTSIDE, region[1], OUTSIDE, merged[-1][3])
        else:
            merged.append(region)
    return merged


def _full_width(region: Rect) -> bool:
    return region[0] == -OUTSIDE and region[2] == OUTSIDE

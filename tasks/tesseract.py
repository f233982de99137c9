"""The `tesseract` program (Debian's tesseract-ocr), run once per page image.

No Python binding: Tesseract runs as its own process, given the page as PNG on its standard input,
answering with TSV (a row per word, with its box and confidence). So a page that makes Tesseract
hang or crash costs a timeout and a message, never the server; its memory goes back when it ends;
and nothing is compiled against one libtesseract version (tesserocr would link it into this
process). pytesseract does the same, but cannot set the program's environment, and it must be set:
OpenMP's threads wait for each other so hard on a small machine that one thread reads a page in
1.2 s and the default two in 9.9 s (2 cores, Tesseract 5.3). Pages run side by side instead
(tasks.ocr), one thread each.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

PROGRAM = "tesseract"
SINGLE_THREAD = {"OMP_THREAD_LIMIT": "1"}


class TesseractMissing(Exception):
    """The program is not installed (or does not start)."""


class TesseractFailed(Exception):
    """The program ran and failed, or took too long, on one image."""


@dataclass(frozen=True)
class Word:
    text: str
    left: int
    top: int
    width: int
    height: int
    confidence: float
    line: tuple[int, int, int]  # block, paragraph, line: words of one line share it


def version() -> str:
    """`tesseract 5.3.0`; raises TesseractMissing."""
    return _run([_path(), "--version"], b"", 30).splitlines()[0]


@cache
def languages() -> frozenset[str]:
    """The language data installed (`eng`, `deu`, ..., and `osd` for script detection)."""
    lines = _run([_path(), "--list-langs"], b"", 30).splitlines()
    return frozenset(line.strip() for line in lines[1:] if line.strip())


def read_words(png: bytes, languages: str, dpi: int, timeout: float) -> list[Word]:
    """The words Tesseract reads in a PNG image, in its reading order."""
    out = _run([_path(), "stdin", "stdout", "-l", languages, "--dpi", str(dpi), "--psm", "3", "tsv"],
               png, timeout)  # fmt: skip
    words = []
    try:
        for row in csv.DictReader(io.StringIO(out), delimiter="\t", quoting=csv.QUOTE_NONE):
            text = (row.get("text") or "").strip()
            if row.get("level") != "5" or not text:
                continue
            line = (int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
            box = (int(row["left"]), int(row["top"]), int(row["width"]), int(row["height"]))
            words.append(Word(text, *box, float(row["conf"]), line))
    except (ValueError, TypeError, KeyError) as exc:
        raise TesseractFailed(f"its output could not be read ({exc})") from exc
    return words


def script(png: bytes, dpi: int, timeout: float) -> str | None:
    """The script Tesseract's orientation and script detection sees (Latin, Han, Arabic, ...),
    or None when it cannot tell (too little text) or has no `osd` data."""
    try:
        out = _run([_path(), "stdin", "stdout", "--dpi", str(dpi), "--psm", "0", "-l", "osd"], png, timeout)
    except TesseractFailed:
        return None
    for line in out.splitlines():
        if line.startswith("Script:"):
            return line.split(":", 1)[1].strip() or None
    return None


def _path() -> str:
    found = shutil.which(PROGRAM)
    if found is None:
        raise TesseractMissing(f"the program {PROGRAM!r} is not installed")
    return found


def _run(command: list[str], data: bytes, timeout: float) -> str:
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=timeout,
                              env={**os.environ, **SINGLE_THREAD})  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise TesseractFailed(f"it took more than {timeout:.0f} seconds") from exc
    except OSError as exc:  # not executable, or gone
        raise TesseractMissing(f"the program does not start ({exc.strerror or exc})") from exc
    if done.returncode != 0:
        error = " ".join(done.stderr.decode("utf-8", "replace").split())[-200:]
        raise TesseractFailed(error or f"it exited with status {done.returncode}")
    return done.stdout.decode("utf-8", "replace")

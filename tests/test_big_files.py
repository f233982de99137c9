"""Files just under the size limit, of any shape (many lines, one endless line, one endless word):
read, counted and chunked in bounded memory and linear work, and what can never be done in a
useful time is refused with the numbers. Memory is measured in a subprocess; the work of counting
and chunking is measured in characters handed to the tokenizer, not in seconds."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from model.tokens import count_tokens, slices
from tasks.chunking import chunk_document
from tasks.documents import MAX_FILE_BYTES, Document, Page
from tasks.errors import TooLongToRun
from tests.conftest import REPO_ROOT
from tests.fakes import FakeEngine
from tests.raw_files import pages_sharing_one_stream

WORDS = ("the", "quarterly", "report", "describes", "revenue", "of", "4.2", "million", "dollars", "approved", "by",
         "the", "committee", "in", "Berlin")  # fmt: skip


def many_lines(size: int) -> str:
    rng = random.Random(0)
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 24))) + ".\n"
        line += "\n" if rng.random() < 0.1 else ""  # a paragraph ends
        lines.append(line)
        total += len(line)
    return "".join(lines)[:size]


def repeated(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


SHAPES = {
    "many lines": many_lines,
    "one line of words": lambda size: repeated(" ".join(WORDS) + ". ", size),
    "one word": lambda size: repeated("ab", size),
    "millions of short lines": lambda size: repeated("ab\n", size),
    "a hyphen break on every line": lambda size: repeated("ab-\n", size),
    "one endless hyphenated word": lambda size: repeated("a-", size),
}
FIRST_SHAPES = ("many lines", "one line of words", "one word")


def test_long_texts_are_counted_exactly_in_slices(tiny_loaded):
    tokenizer = tiny_loaded.tokenizer
    rng = random.Random(1)
    pieces = ["word", "Berlin", " ", "  ", "\n", "\n\n", ".", ",", "会社の売上", "Größe", "12", "3.5", "\t", "'s", "-!"]
    for _ in range(40):
        text = "".join(rng.choice(pieces) + (" " if rng.random() < 0.6 else "") for _ in range(rng.randint(400, 3000)))
        size = rng.choice([512, 2048])
        assert "".join(slices(text, size)) == text
        assert count_tokens(tokenizer, text, slice_chars=size, exact_chars=0) == len(tokenizer.encode(text))


def test_a_slice_without_a_clean_cut_is_cut_anyway(tiny_loaded):
    word = "ab" * 5000
    assert [len(piece) for piece in slices(word, 4096)] == [4096, 4096, 1808]
    sliced = count_tokens(tiny_loaded.tokenizer, word, slice_chars=4096, exact_chars=0)
    assert abs(sliced - len(tiny_loaded.tokenizer.encode(word))) <= 4


class CountingEngine(FakeEngine):
    """Counts one token per four characters, and how many characters it was asked to count."""

    counted: int = 0

    def count_tokens(self, text: str) -> int:
        self.counted += len(text)
        return -(-len(text) // 4)


@pytest.mark.parametrize("shape", SHAPES)
def test_chunking_any_shape_counts_each_character_about_once(shape):
    text = SHAPES[shape](2_000_000)
    engine = CountingEngine()
    chunks = chunk_document(Document("big.txt", (Page(1, text),)), engine, max_tokens=384)
    assert all(chunk.tokens <= 384 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(
        " ", ""
    )
    assert engine.counted <= 2.5 * len(text), f"{engine.counted / len(text):.1f} characters counted per character"


def test_a_summary_that_can_never_finish_in_time_is_refused_with_the_numbers(fake_engine, tmp_path):
    from tasks.workbench import Workbench

    path = tmp_path / "ledger.txt"
    path.write_text(("The committee approved invoice 4417 for the Berlin warehouse. " * 40 + "\n\n") * 400)
    workbench = Workbench(fake_engine)  # reads 100 tokens a second
    options = workbench.options(max_new_tokens=64, time_limit=600)
    with pytest.raises(TooLongToRun) as refused:
        list(workbench.summarize(path, options))
    message = str(refused.value)
    # Reading each of the 144,013 document tokens once is already too long: refused before the
    # work of cutting the sections, with the least it would read and write.
    assert message.startswith("A summary of ledger.txt would take at least 24 minutes here: reading 144,013 tokens")
    assert "writing at least 64 at 10.0 per second" in message and "a request may run for 10 minutes" in message
    assert "Ask questions instead" in message
    assert not fake_engine.prompts  # refused before anything was generated
    card = workbench.card(workbench.read(path), options)
    assert card.expected_wait == f"too long to run: {message}" and card.refused["summarize"] == message
    # Enough to read it once, not to summarize it in parts of 384 tokens each.
    half_hour = workbench.options(max_new_tokens=384, time_limit=1800)
    with pytest.raises(TooLongToRun) as refused:
        list(workbench.summarize(path, half_hour))
    message = str(refused.value)
    # 20 sections, each summarized in 384 tokens that the merge reads again
    assert message.startswith("A summary of ledger.txt would take about 39 minutes here: reading 151,693 tokens at 100")
    assert "writing about 8,064 at 10.0 per second" in message and "a request may run for 30 minutes" in message
    assert not fake_engine.prompts
    card = workbench.card(workbench.read(path), half_hour)
    assert card.parts["summarize"] == 20 and card.expected_wait == f"too long to run: {message}"
    unlimited = workbench.options(max_new_tokens=8, time_limit=None)  # without a limit: up to six hours
    assert list(workbench.summarize(path, unlimited))[-1].strategy == "map-reduce"


MEASURE = textwrap.dedent(
    """
    import gc, json, sys, threading, time
    sys.path.insert(0, ".")
    from model.loader import load_model
    from model.engine import Engine
    from model.runtime import Runtime
    from tasks.workbench import Workbench

    def rss():
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * 4096

    peak = [0]
    def sample():
        while True:
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    workbench = Workbench(Engine(load_model("tiny-random", Runtime("cpu", "float32", "none"))))
    split = sys.argv.index("--")
    for path in sys.argv[1:split]:  # warm up on small files: code loaded, thread pools made, the speed measured
        workbench.card(workbench.read(path))
    threading.Thread(target=sample, daemon=True).start()
    results = {}
    for path in sys.argv[split + 1 :]:
        gc.collect()
        time.sleep(0.05)
        base = peak[0] = rss()
        card = workbench.card(workbench.read(path))
        results[path] = {"tokens": card.tokens, "peak_growth": peak[0] - base}
    print(json.dumps(results))
    """
)


@pytest.mark.timeout(900)  # nine files of up to 50 MB, each read, counted and planned (split into sections)
def test_files_just_under_the_limit_are_read_and_counted_in_bounded_memory(tiny_checkpoint, tmp_path):
    """What the web UI's document card does (read, clean, detect the language, count the tokens,
    plan each task: a summary's map-reduce sections too) for files of MAX_FILE_BYTES - 1 bytes;
    before the bounds, reading and counting alone took 6-8 GB and 40-75 s each."""
    warm_ups, paths = [], []
    for number, make in enumerate(SHAPES.values()):  # a megabyte of each shape: every code path warmed up
        warm_up = tmp_path / f"warm-up-{number}.txt"
        warm_up.write_text(make(1_000_000), encoding="ascii")
        warm_ups.append(str(warm_up))
    for number, (shape, make) in enumerate(SHAPES.items()):
        path = tmp_path / f"shape-{number}.txt"
        # The shapes found later (millions of short lines or hyphens) at a fifth of the limit: memory
        # is bounded relative to the size, and six files at the limit would take minutes.
        size = MAX_FILE_BYTES - 1 if shape in FIRST_SHAPES else MAX_FILE_BYTES // 5
        path.write_text(make(size), encoding="ascii")
        assert size - 4 <= path.stat().st_size <= size
        paths.append(str(path))
    done = subprocess.run([sys.executable, "-c", MEASURE, *warm_ups, "--", *paths], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=840)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for path in paths:
        size = Path(path).stat().st_size
        assert results[path]["tokens"] > size // 8
        assert results[path]["peak_growth"] < 6 * size, f"{path}: {results[path]['peak_growth'] / 2**20:.0f} MiB"


def test_a_pdf_whose_pages_share_one_long_text_is_refused_as_it_is_read(tmp_path, monkeypatch):
    from tasks import readers
    from tasks.documents import load_document
    from tasks.errors import DocumentError

    pdf = tmp_path / "copies.pdf"
    text = "Lorem ipsum dolor sit amet. " * 40
    pdf.write_bytes(pages_sharing_one_stream(200, f"BT /F1 8 Tf 10 800 Td ({text}) Tj ET".encode()))
    assert load_document(pdf).char_count > 200 * 1000  # within the limits it reads
    monkeypatch.setattr(readers, "MAX_TEXT_CHARS", 50_000)  # a 2 KB file that would hold 200 copies
    with pytest.raises(DocumentError, match=r"copies\.pdf: refused: this document holds more than 50,000 characters"):
        load_document(pdf)
    monkeypatch.setattr(readers, "MAX_READ_SECONDS", -1.0)  # every page takes longer than that
    with pytest.raises(DocumentError, match=r"took more than -1 seconds for 1 of its 200 pages"):
        load_document(pdf)

"""A long-context check: a fact (the "needle") hidden at several depths of a long filler text (the
"haystack"), then asked for. How a user verifies the model's 128K-token claim on their own hardware.

The filler is our own: neutral sentences about an imaginary town, shuffled with a fixed seed, so a
run is repeatable and no sentence looks like the needle. Each trial hides a different random code.
An answer is right when it contains the code.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from tasks.errors import InvalidRequest
from tasks.interfaces import TextEngine
from tasks.options import comma_list

DEFAULT_LENGTHS = (4096, 16384, 65536, 131072)
DEFAULT_DEPTHS = (0, 25, 50, 75, 100)
NEEDLE = "The secret code for the blue door of the lighthouse is {code}."
QUESTION = (
    "\n\nQuestion: What is the secret code for the blue door of the lighthouse, according to the text above?\n"
    "Answer: The secret code for the blue door of the lighthouse is"
)
ANSWER_TOKENS = 12
FILLER = (
    "The market in Ostervik opens at seven, when the bakers carry out the first trays of rye bread.",
    "Fishing boats leave the harbour before dawn and return when the tide turns in the afternoon.",
    "The town library keeps its maps of the coast in long drawers that smell of cedar and salt.",
    "In spring the council repaints the benches along the promenade in a pale shade of green.",
    "Children cross the old stone bridge on their way to the school beside the chapel.",
    "A ferry to the islands runs twice a day in summer and once a day when the storms come.",
    "The weather station on the hill records the wind every hour and posts it on a board.",
    "Most houses in the lower streets have red roofs and small gardens of herbs and roses.",
    "On Saturdays a brass band practises in the hall next to the fire station.",
    "The museum shows old nets, ship models and photographs of the great flood of the harbour.",
    "Walkers follow the cliff path north to a bay where seals rest on the flat rocks.",
    "The railway reached the town late, and the station still has its wooden waiting room.",
    "Every autumn the apple growers from the valley sell cider in the square.",
    "The river that runs through the town is narrow, slow and full of reeds near its mouth.",
    "A small observatory on the ridge opens to visitors on clear nights in winter.",
    "The carpenters' guild once built most of the fishing boats that still sail from the quay.",
    "Gulls follow the boats into the harbour, hoping for scraps from the morning catch.",
    "The post office is in a narrow building with a clock that runs two minutes fast.",
    "Farmers bring cheese and honey to the market from the villages up the valley.",
    "The lighthouse keeper's cottage is now a café that serves soup and thick slices of bread.",
)


@dataclass(frozen=True)
class Trial:
    length: int  # the haystack's target size in tokens
    depth: int  # where the needle sits, in percent of the haystack (0 = start, 100 = end)
    tokens: int  # the prompt's real size in tokens
    code: str
    answer: str
    correct: bool


@dataclass(frozen=True)
class ContextCheck:
    """The results of a check-context run: every trial, and the lengths skipped."""

    trials: list[Trial]
    skipped: list[str]  # lengths that do not fit, with why

    def accuracy(self, length: int, depth: int) -> float | None:
        cell = [trial.correct for trial in self.trials if trial.length == length and trial.depth == depth]
        return sum(cell) / len(cell) if cell else None

    def to_json(self) -> dict:
        lengths = sorted({trial.length for trial in self.trials})
        depths = sorted({trial.depth for trial in self.trials})
        table = {str(length): {str(depth): self.accuracy(length, depth) for depth in depths} for length in lengths}
        overall = sum(trial.correct for trial in self.trials) / len(self.trials) if self.trials else None
        return {"accuracy": table, "overall": overall, "skipped": self.skipped,
                "trials": [asdict(trial) for trial in self.trials]}  # fmt: skip


def parse_lengths(text: str) -> list[int]:
    """'4k,16k,128k' -> [4096, 16384, 131072]; plain numbers are tokens."""
    lengths = []
    for item in (part.lower() for part in comma_list(text)):
        match = re.fullmatch(r"(\d+)(k?)", item)
        if not match or int(match.group(1)) == 0:
            raise InvalidRequest(f"--lengths takes sizes like 4k,16k,128k or 2048; got {item!r}")
        lengths.append(int(match.group(1)) * (1024 if match.group(2) else 1))
    if not lengths:
        raise InvalidRequest("--lengths needs at least one size, like 4k")
    return lengths


def parse_depths(text: str) -> list[int]:
    """'0,50,100' -> [0, 50, 100] (percent)."""
    try:
        depths = [int(part) for part in comma_list(text)]
    except ValueError as exc:
        raise InvalidRequest(f"--depths takes percentages like 0,25,50,75,100; got {text!r}") from exc
    if not depths or any(not 0 <= depth <= 100 for depth in depths):
        raise InvalidRequest(f"--depths takes percentages from 0 to 100; got {text!r}")
    return depths


def check_context(
    engine: TextEngine, lengths: Sequence[int], depths: Sequence[int], trials: int = 1, seed: int = 0
) -> Iterator[Trial | str]:
    """Run every (length, depth, trial); yield each Trial, or a message for a length that does
    not fit the model's context."""
    rng = random.Random(seed)
    room = ANSWER_TOKENS + engine.count_tokens(QUESTION) + 8
    for length in lengths:
        if length + room > engine.context_limit:
            yield f"{length:,} tokens: longer than the model's context limit of {engine.context_limit:,}"
            continue
        sentences = _filler_for(engine, length, rng)
        for depth in depths:
            for _ in range(trials):
                yield _trial(engine, sentences, length, depth, f"{rng.randrange(10**5, 10**6)}")


def run(engine: TextEngine, lengths: Sequence[int], depths: Sequence[int], trials: int = 1) -> ContextCheck:
    results, skipped = [], []
    for item in check_context(engine, lengths, depths, trials):
        (skipped if isinstance(item, str) else results).append(item)
    return ContextCheck(results, skipped)


def _filler_for(engine: TextEngine, length: int, rng: random.Random) -> list[str]:
    """Shuffled filler sentences adding up to about `length` tokens."""
    per_round = engine.count_tokens(" ".join(FILLER)) or 1
    rounds = -(-length // per_round)
    sentences: list[str] = []
    for _ in range(rounds):
        batch = list(FILLER)
        rng.shuffle(batch)
        sentences.extend(batch)
    while len(sentences) > 1 and engine.count_tokens(" ".join(sentences)) > length:
        surplus = engine.count_tokens(" ".join(sentences)) - length
        sentences = sentences[: max(1, len(sentences) - max(1, surplus * len(FILLER) // per_round))]
    return sentences


def _trial(engine: TextEngine, sentences: list[str], length: int, depth: int, code: str) -> Trial:
    at = round(len(sentences) * depth / 100)
    haystack = " ".join([*sentences[:at], NEEDLE.format(code=code), *sentences[at:]])
    chunks = engine.stream(QUESTION, prefix=haystack, max_new_tokens=ANSWER_TOKENS, stop=("\n",))
    answer = "".join(chunk.text for chunk in chunks).strip()
    tokens = engine.count_tokens(haystack + QUESTION)
    return Trial(length, depth, tokens, code, answer, code in answer)


def table(report: ContextCheck) -> str:
    """Accuracy by length (rows) and depth (columns), as text."""
    lengths = sorted({trial.length for trial in report.trials})
    depths = sorted({trial.depth for trial in report.trials})
    lines = ["tokens  " + "".join(f"{depth:>7}%" for depth in depths)]
    for length in lengths:
        cells = "".join(f"{report.accuracy(length, depth):>8.0%}" for depth in depths)
        lines.append(f"{length:>6,}  {cells}")
    lines += [f"skipped {message}" for message in report.skipped]
    return "\n".join(lines)


def heatmap_png(report: ContextCheck, path: str) -> None:
    """Write the accuracy table as a PNG heatmap (red 0% to green 100%) with Pillow."""
    from PIL import Image, ImageDraw

    lengths = sorted({trial.length for trial in report.trials})
    depths = sorted({trial.depth for trial in report.trials})
    cell, left, top = 64, 90, 40
    image = Image.new("RGB", (left + cell * len(depths) + 10, top + cell * len(lengths) + 30), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 8), "needle found (depth % across, tokens down)", fill="black")
    for column, depth in enumerate(depths):
        draw.text((left + column * cell + 20, top - 16), f"{depth}%", fill="black")
    for row, length in enumerate(lengths):
        draw.text((8, top + row * cell + cell // 2 - 6), f"{length:,}", fill="black")
        for column, depth in enumerate(depths):
            share = report.accuracy(length, depth) or 0.0
            color = (int(220 * (1 - share)), int(180 * share), 60)
            box = (left + column * cell, top + row * cell, left + (column + 1) * cell - 2, top + (row + 1) * cell - 2)
            draw.rectangle(box, fill=color)
            draw.text((box[0] + 18, box[1] + cell // 2 - 6), f"{share:.0%}", fill="white")
    image.save(path, format="PNG")

"""A task's step names and expected waits, in the page's language.

The tasks say where they are in English (the command line prints the same words); the page
translates the steps it knows by their shape here, with their numbers and names kept. A step
this table does not know is shown as the task wrote it, so a new message is never lost, only
untranslated (tests/test_ui_pieces.py runs every task and checks that each of its steps is known).
"""

from __future__ import annotations

import re

from app.i18n import strategy_name, text

# (the English step, its key in app/locales): named groups become the string's placeholders.
_STEPS = [
    (r"Reading the documents", "step.reading"),
    (r"Writing", "step.writing"),
    (r"Reading (?P<tokens>[\d,]+) tokens \((?P<strategy>[\w-]+)\); expected wait: (?P<wait>.+)", "step.prompt"),
    (r"Summarizing part (?P<number>\d+) of (?P<total>\d+) \((?P<document>.+), pages? (?P<pages>[\d-]+)\)", "step.part"),
    (r"Merging (?P<count>\d+) partial summaries", "step.merge"),
    (r"Merging partial summaries, level (?P<level>\d+): group (?P<number>\d+) of (?P<total>\d+)", "step.merge_group"),
    (r"(?P<count>\d+) partial summaries were longer than planned and were shortened to fit", "step.shortened"),
    (r"The budget leaves room for a summary of (?P<tokens>[\d,]+) tokens at most", "step.room"),
    (r"Scoring (?P<count>\d+) labels \((?P<strategy>[\w-]+)\)", "step.scoring"),
    (r"The model gave an empty answer; asking once more", "step.retry_empty"),
    (r"Stopped: the model began repeating itself", "step.repetition"),
    (r"(?P<document>.+): OCR page (?P<number>[\d,]+) of (?P<total>[\d,]+)(?P<rest>.*)", "step.ocr"),
]
_WAITS = [
    (r"a few seconds", "wait.seconds_few"),
    (r"about (?P<count>\d+) seconds", "wait.seconds"),
    (r"about (?P<count>\d+) minutes", "wait.minutes"),
    (r"about (?P<count>[\d.]+) hours", "wait.hours"),
]
_COMPILED_STEPS = [(re.compile(pattern), key) for pattern, key in _STEPS]
_COMPILED_WAITS = [(re.compile(pattern), key) for pattern, key in _WAITS]


def step_name(message: str, language: str) -> str:
    """`message` (a task's step) in `language`; as written when it is not a known step."""
    if language == "en":
        return message
    for pattern, key in _COMPILED_STEPS:
        match = pattern.fullmatch(message)
        if match:
            values = match.groupdict()
            if "strategy" in values:
                values["strategy"] = strategy_name(values["strategy"], language)
            if "wait" in values:
                values["wait"] = wait_words(values["wait"], language)
            return text(key, language, **values)
    return message


def wait_words(wait: str, language: str) -> str:
    """An expected wait ("about 4 minutes") in `language`."""
    for pattern, key in _COMPILED_WAITS:
        match = pattern.fullmatch(wait)
        if match:
            return text(key, language, **match.groupdict())
    return wait


def known(message: str) -> bool:
    return any(pattern.fullmatch(message) for pattern, _ in _COMPILED_STEPS)

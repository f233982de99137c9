"""Where a generated answer should end.

A small or base model often goes on past its answer: into a question of its own ("Question: ...",
"Q:", multiple-choice options), or into a loop that says one sentence again and again until the
token limit. `EndingGuard` watches the text as it streams, says when to stop, and gives the text
cut back to where the answer ended. It works on text, so it serves every engine alike.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

# A line that starts a new question-and-answer block or an exercise: the model is writing its own
# test, not answering. Checked on every line after the first (the templates' own cues are stop
# strings; these are the forms models invent).
_NEW_BLOCK = re.compile(
    r"^\s*(?:\**(?:question|q|a|answer|frage|antwort|pregunta|respuesta|réponse|domanda|pergunta|vraag)"
    r"\s*\d*\s*\**\s*[:：]|please answer|answer the following|[a-d][).]\s|\([a-d]\)\s)",
    re.IGNORECASE,
)
_QUESTION_END = re.compile(r"[?？؟]\s*$")
_SENTENCE_END = re.compile(r"[.!?。！？؟](?=\s|$)|\n")
MIN_SENTENCE_CHARS = 12  # shorter "sentences" ("Yes.", "1.") may well come twice in a good answer
LOOP_MIN_CHARS = 80  # a run of one repeated unit this long (4 units at least) is a loop
LOOP_MAX_UNIT = 64


@dataclass
class EndingGuard:
    """Feed it the text as it streams (`push`); `push` returns True once the answer has ended.
    `questions`: the text answers a request, so a later line that asks a question of its own ends
    it too (not for summaries, which may report the questions a document asks)."""

    questions: bool = False
    text: str = ""
    end: int | None = None  # where the answer ends, once found
    reason: str | None = None  # "question" or "repetition"
    _line_start: int = 0  # where the current (unfinished) line starts
    _sentence_start: int = 0  # where the current (unfinished) sentence starts
    _seen: set[str] = field(default_factory=set)

    def push(self, delta: str) -> bool:
        if self.end is None:
            self.text += delta
            self._check_lines(final=False)
            self._check_sentences(final=False)
            self._check_loop()
        return self.end is not None

    def finish(self) -> str:
        """The answer as it should stand, its last (unfinished) line and sentence checked too."""
        self._check_lines(final=True)
        self._check_sentences(final=True)
        return (self.text if self.end is None else self.text[: self.end]).rstrip()

    def _check_lines(self, final: bool) -> None:
        """A later line that starts a new question block (as soon as its cue is written), or, when
        answering, a later line that is a question (once it is over)."""
        while self.end is None:
            newline = self.text.find("\n", self._line_start)
            over = newline >= 0 or final
            line = self.text[self._line_start : newline if newline >= 0 else len(self.text)]
            later = bool(self.text[: self._line_start].strip())  # the first line is the answer's own
            if later and (_NEW_BLOCK.match(line) or (over and self.questions and _QUESTION_END.search(line))):
                self._cut(self._line_start, "question")
                return
            if newline < 0:
                return
            self._line_start = newline + 1

    def _check_sentences(self, final: bool) -> None:
        """A finished sentence said before (its words, case and punctuation aside) starts a loop."""
        while self.end is None:
            match = _SENTENCE_END.search(self.text, self._sentence_start)
            if match is None and not final:
                return
            stop = match.end() if match else len(self.text)
            key = _normalized(self.text[self._sentence_start : stop])
            if len(key) >= MIN_SENTENCE_CHARS:
                if key in self._seen:
                    self._cut(self._sentence_start, "repetition")
                    return
                self._seen.add(key)
            if match is None:
                return
            self._sentence_start = stop

    def _check_loop(self) -> None:
        """A run with no sentence end: the tail made of one short unit repeated (digits, a code)."""
        if self.end is not None:
            return
        tail = self.text[-(LOOP_MIN_CHARS + LOOP_MAX_UNIT) :]
        if len(tail) < LOOP_MIN_CHARS:
            return
        for size in range(1, LOOP_MAX_UNIT + 1):
            unit = tail[-size:]
            repeats = 1
            while tail.endswith(unit * (repeats + 1)):
                repeats += 1
            if repeats >= 4 and size * repeats >= LOOP_MIN_CHARS and any(c.isalnum() for c in unit):
                self._cut(len(self.text) - size * (repeats - 1), "repetition")
                return

    def _cut(self, at: int, reason: str) -> None:
        self.end, self.reason = at, reason


def _normalized(sentence: str) -> str:
    text = unicodedata.normalize("NFKC", sentence).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())

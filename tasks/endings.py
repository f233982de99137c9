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
BLOCK_CUE_CHARS = 24  # a later line this long that opened no question block will not open one


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
    _shown: int = 0  # the most `settled` has said: shown to the user already

    def push(self, delta: str) -> bool:
        if self.end is None:
            self.text += delta
            self._check_lines(final=False)
            self._check_sentences(final=False)
            self._check_loop()
        return self.end is not None

    def settled(self) -> int:
        """How much of the text stands whatever comes next, so it can be shown now: not a later
        line that may still open a question block (or, answering, turn out to be a question), not a
        sentence that so far says one said before, not a run that repeats, not trailing space. What
        is shown is then always the start of what `finish` returns."""
        if self.end is not None:
            return len(self.text[: self.end].rstrip())
        safe = len(self.text)
        later_line = self.text[: self._line_start].strip()
        line_so_far = self.text[self._line_start :].lstrip()
        if later_line and (self.questions or len(line_so_far) < BLOCK_CUE_CHARS):
            safe = min(safe, self._line_start)
        # A sentence begun with markup or quotes ("**", '"') only may yet repeat one said before.
        partial = _normalized(self.text[self._sentence_start :])
        if self._seen and any(seen.startswith(partial) for seen in self._seen):
            safe = min(safe, self._sentence_start)
        safe = len(self.text[: min(safe, self._repeating_from())].rstrip())
        self._shown = max(self._shown, safe)
        return safe

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
        size, repeats = self._tail_run(min_repeats=4, min_chars=LOOP_MIN_CHARS)
        if size:  # a unit shown before its repeat could be seen stays: what was shown is never taken back
            self._cut(max(len(self.text) - size * (repeats - 1), self._shown), "repetition")

    def _repeating_from(self) -> int:
        """Where the tail's repeats begin (its second unit), or the text's end when it repeats nothing."""
        size, repeats = self._tail_run(min_repeats=2, min_chars=0)
        return len(self.text) - size * (repeats - 1) if size else len(self.text)

    def _tail_run(self, min_repeats: int, min_chars: int) -> tuple[int, int]:
        """(unit size, repeats) of the shortest unit (up to LOOP_MAX_UNIT characters, holding a
        letter or digit) that the tail repeats at least `min_repeats` times over `min_chars`; (0, 0)
        when there is none."""
        tail = self.text[-(LOOP_MIN_CHARS + LOOP_MAX_UNIT) :]
        if len(tail) < max(min_chars, 2):
            return 0, 0
        for size in range(1, min(LOOP_MAX_UNIT, len(tail) // 2) + 1):
            unit = tail[-size:]
            repeats = 1
            while tail.endswith(unit * (repeats + 1)):
                repeats += 1
            if repeats >= min_repeats and size * repeats >= min_chars and any(c.isalnum() for c in unit):
                return size, repeats
        return 0, 0

    def _cut(self, at: int, reason: str) -> None:
        self.end, self.reason = at, reason


def _normalized(sentence: str) -> str:
    text = unicodedata.normalize("NFKC", sentence).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())
